//! Input checks shared by every measurement: each names what is wrong.

use candle_core::{DType, Tensor};
use contrastive_core::{Error, Result};

/// Checks a 2-D embedding matrix with at least one row and no NaN or infinity; returns (N, D).
pub(crate) fn embeddings(what: &str, x: &Tensor) -> Result<(usize, usize)> {
    let (n, d) = match x.dims() {
        [n, d] => (*n, *d),
        other => return Err(Error::shape(format!("{what}: embeddings"), "(N, D)", other)),
    };
    if n == 0 || d == 0 {
        return Err(Error::shape(format!("{what}: embeddings"), "(N, D) with N, D >= 1", &[n, d]));
    }
    let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::Data(format!("{what}: embedding row {} has a non-finite value ({})", at / d, values[at])));
    }
    Ok((n, d))
}

/// The largest class id the measurements take: kNN ranks every id up to the largest one, so an
/// id of 4e9 would ask for gigabytes; more than a million classes is not a labelled data set.
pub(crate) const MAX_CLASS_ID: u32 = (1 << 20) - 1;

/// Checks that `labels` has one entry per row, each at most [`MAX_CLASS_ID`].
pub(crate) fn labels(what: &str, labels: &[u32], rows: usize) -> Result<()> {
    if labels.len() != rows {
        return Err(Error::shape(format!("{what}: labels"), format!("({rows},), one per embedding"), &[labels.len()]));
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l > MAX_CLASS_ID) {
        return Err(Error::Data(format!(
            "{what}: label {i} is class {l}; class ids run 0, 1, 2, ... up to {MAX_CLASS_ID}: renumber the classes"
        )));
    }
    Ok(())
}

/// Checks that embeddings `what` of shape `(n, d)` have the width `width` of `other`.
pub(crate) fn same_width(what: &str, (n, d): (usize, usize), width: usize, other: &str) -> Result<()> {
    if d != width {
        return Err(Error::shape(format!("{what}: embeddings"), format!("(N, {width}) as {other}"), &[n, d]));
    }
    Ok(())
}

/// Checks two equally long, non-empty, finite series.
pub(crate) fn series(what: &str, x: &[f64], y: &[f64], min_len: usize) -> Result<()> {
    if x.len() != y.len() {
        return Err(Error::shape(format!("{what}: second series"), format!("({},) as the first", x.len()), &[y.len()]));
    }
    if x.len() < min_len {
        return Err(Error::shape(format!("{what}: series"), format!("(>= {min_len},)"), &[x.len()]));
    }
    for (name, s) in [("first", x), ("second", y)] {
        if let Some(i) = s.iter().position(|v| !v.is_finite()) {
            return Err(Error::Data(format!("{what}: {name} series has a non-finite value at index {i}")));
        }
    }
    Ok(())
}
