//! Mergeable distinct-count sketches of user ids: the `users_sketch` column
//! of every rollup table, and the SQL functions that build, merge and read
//! it.
//!
//! A sketch is an Apache DataSketches HLL sketch (`lg_k` = [`LG_K`], 4 bits
//! per register when dense) in the DataSketches binary format, so Druid, the
//! DataSketches libraries for Java, C++ and Python, and any engine that
//! reads that format can merge and estimate it. User ids are hashed as their
//! UTF-8 bytes (MurmurHash3 x64 128, seed 9001), as DataSketches hashes a
//! string; docs/DATA_LAYOUT.md describes the layout.
//!
//! - `hll_sketch(user_id)`: aggregate, the sketch of the ids.
//! - `hll_union(sketch)`: aggregate, the sketch of the union of sketches.
//! - `hll_estimate(sketch)`: the estimated number of distinct ids.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BinaryArray, Float64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err};
use datafusion::logical_expr::{Accumulator, ColumnarValue, Volatility, create_udaf, create_udf};
use datafusion::prelude::SessionContext;
use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType, HllUnion};

/// log2 of the number of registers: 131,072 registers, a relative standard
/// error of about 0.29% (1.04/√K) for a merged sketch, so 1% is 3.5 standard
/// errors. Small sets are kept as lists of hashes (exact but for hash
/// collisions); a dense sketch takes 64 KiB.
pub const LG_K: u8 = 17;

/// Register every sketch function on `ctx`.
pub fn register(ctx: &SessionContext) {
    for (name, input) in [
        ("hll_sketch", DataType::Utf8),
        ("hll_union", DataType::Binary),
    ] {
        let merge_input = input == DataType::Binary;
        ctx.register_udaf(create_udaf(
            name,
            vec![input],
            Arc::new(DataType::Binary),
            Volatility::Immutable,
            Arc::new(move |_| Ok(Box::new(SketchAccumulator::new(merge_input)))),
            Arc::new(vec![DataType::Binary]),
        ));
    }
    ctx.register_udf(create_udf(
        "hll_estimate",
        vec![DataType::Binary],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(estimate),
    ));
}

/// The sketch of `ids`, serialized (what `hll_sketch` stores).
pub fn sketch_of<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut union = new_union();
    for id in ids.into_iter().filter(|id| !id.is_empty()) {
        union.update_value(raw_bytes::from_str(id));
    }
    union.to_sketch(HllType::Hll4).serialize()
}

/// The estimate of one serialized sketch.
pub fn estimate_of(bytes: &[u8]) -> Result<f64> {
    Ok(decode(bytes)?.estimate())
}

fn new_union() -> HllUnion {
    // LG_K is within DataSketches' 4..=21.
    HllUnion::new(LG_K).unwrap_or_else(|_| unreachable!("lg_k {LG_K} is valid"))
}

fn decode(bytes: &[u8]) -> Result<HllSketch> {
    HllSketch::deserialize(bytes)
        .map_err(|e| DataFusionError::Execution(format!("not an HLL sketch: {e}")))
}

#[derive(Debug)]
struct SketchAccumulator {
    union: HllUnion,
    /// Inputs are serialized sketches (`hll_union`) rather than ids.
    merge_input: bool,
}

impl SketchAccumulator {
    fn new(merge_input: bool) -> Self {
        Self {
            union: new_union(),
            merge_input,
        }
    }

    fn merge_sketches(&mut self, values: &ArrayRef) -> Result<()> {
        let sketches: &BinaryArray = values.as_binary();
        for bytes in sketches.iter().flatten() {
            self.union.update(&decode(bytes)?);
        }
        Ok(())
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if self.merge_input {
            return self.merge_sketches(&values[0]);
        }
        let ids = values[0].as_string::<i32>();
        for id in ids.iter().flatten().filter(|id| !id.is_empty()) {
            self.union.update_value(raw_bytes::from_str(id));
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.merge_sketches(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Binary(Some(
            self.union.to_sketch(HllType::Hll4).serialize(),
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.union.estimated_size()
    }
}

fn estimate(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let [arg] = args else {
        return exec_err!("hll_estimate takes one sketch");
    };
    match arg {
        ColumnarValue::Scalar(ScalarValue::Binary(b)) => Ok(ColumnarValue::Scalar(
            ScalarValue::Float64(b.as_deref().map(estimate_of).transpose()?),
        )),
        ColumnarValue::Scalar(other) if other.is_null() => {
            Ok(ColumnarValue::Scalar(ScalarValue::Float64(None)))
        }
        ColumnarValue::Scalar(other) => exec_err!("hll_estimate takes a sketch, not {other}"),
        ColumnarValue::Array(a) => {
            let sketches: &BinaryArray = a.as_binary();
            let out = sketches
                .iter()
                .map(|b| b.map(estimate_of).transpose())
                .collect::<Result<Float64Array>>()?;
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sets_are_counted_exactly_and_unions_do_not_double_count() {
        let a: Vec<String> = (0..500).map(|i| format!("u{i}")).collect();
        let b: Vec<String> = (250..750).map(|i| format!("u{i}")).collect();
        let sa = sketch_of(a.iter().map(String::as_str));
        let sb = sketch_of(b.iter().map(String::as_str));
        assert_eq!(estimate_of(&sa).expect("sketch").round(), 500.0);
        let mut union = new_union();
        for s in [&sa, &sb] {
            union.update(&decode(s).expect("sketch"));
        }
        // 750 distinct ids, not 500 + 500.
        assert_eq!(union.estimate().round(), 750.0);
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let err = estimate_of(b"not a sketch").expect_err("garbage");
        assert!(err.to_string().contains("not an HLL sketch"), "{err}");
    }

    #[test]
    fn empty_ids_are_skipped_as_datasketches_does() {
        assert_eq!(
            estimate_of(&sketch_of(["", "a", ""]))
                .expect("sketch")
                .round(),
            1.0
        );
    }

    #[test]
    fn estimate_of_a_sketch_column() {
        let col: ArrayRef = Arc::new(BinaryArray::from_iter(vec![
            Some(sketch_of(["a", "b"])),
            None,
        ]));
        let ColumnarValue::Array(out) = estimate(&[ColumnarValue::Array(col)]).expect("estimate")
        else {
            panic!("an array in, an array out");
        };
        let out = out.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
        assert_eq!(out.value(0).round(), 2.0);
        assert!(datafusion::arrow::array::Array::is_null(out, 1));
    }
}
