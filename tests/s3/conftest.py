import os
import sys

# Share the fixtures of the end-to-end suite.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
