//! Network parameters as a NumPy `.npz` file: what `train --out` writes
//! as `parameters.npz` and what `train --init-from FILE.npz` starts from.
//!
//! The file is a zip archive of `.npy` arrays (NumPy's own format, what
//! `numpy.savez` writes): for weight layer k = 1, 2, … the array `W{k}` of
//! shape `(n_k, n_{k−1})` (outputs × inputs, row-major, `float32`) and
//! `b{k}` of shape `(n_k,)`, so that `relu(x @ W1.T + b1)` is the first
//! layer of the forward pass — the layout of a PyTorch `nn.Linear`'s
//! `weight` and `bias`. Reading accepts `float32` or `float64`, C or
//! Fortran order, stored or deflated (`numpy.savez_compressed`) entries.

use crate::linalg::{Mat, Vector};
use anyhow::{bail, Context, Result};
use npyz::WriterBuilder;
use std::io::{Cursor, Read, Write};
use std::path::Path;

/// Writes `params` (`W_1, b_1` first) to `path` atomically.
pub fn write_parameters(path: &Path, params: &[(Mat, Vector)]) -> Result<()> {
    let bytes = encode_parameters(params).with_context(|| format!("{}", path.display()))?;
    super::run_dir::write_atomic(path, &bytes)
}

/// The `.npz` file of `params` (`W_1, b_1` first) as bytes.
pub fn encode_parameters(params: &[(Mat, Vector)]) -> Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (k, (w, b)) in params.iter().enumerate() {
        // nalgebra stores column-major: the transpose's storage is W row by row.
        let row_major = w.transpose();
        let arrays: [(String, Vec<u64>, &[f32]); 2] = [
            (
                format!("W{}", k + 1),
                vec![w.nrows() as u64, w.ncols() as u64],
                row_major.as_slice(),
            ),
            (format!("b{}", k + 1), vec![b.len() as u64], b.as_slice()),
        ];
        for (name, shape, data) in arrays {
            zip.start_file(format!("{name}.npy"), options)
                .with_context(|| format!("starting array {name}"))?;
            let mut npy = Vec::with_capacity(128 + 4 * data.len());
            let mut writer = npyz::WriteOptions::<f32>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut npy)
                .begin_nd()
                .with_context(|| format!("encoding array {name}"))?;
            writer
                .extend(data.iter().copied())
                .and_then(|_| writer.finish())
                .with_context(|| format!("encoding array {name}"))?;
            zip.write_all(&npy)
                .with_context(|| format!("writing array {name}"))?;
        }
    }
    Ok(zip.finish().context("finishing the archive")?.into_inner())
}

/// Reads the parameters of `path` (`W1, b1, W2, b2, …` until `W{k}` is
/// missing). Every array is checked for its kind, rank and shape; the
/// shapes against the architecture are checked where the network is
/// built ([`crate::experiment::train::build_network_from`]).
pub fn read_parameters(path: &Path) -> Result<Vec<(Mat, Vector)>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open parameters file {}", path.display()))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).with_context(|| {
        format!(
            "{} is not a NumPy .npz file (a zip archive of .npy arrays, as numpy.savez writes)",
            path.display()
        )
    })?;
    let mut layers = Vec::new();
    for k in 1.. {
        let w_name = format!("W{k}");
        if archive.index_for_name(&format!("{w_name}.npy")).is_none() {
            break;
        }
        let (w_shape, w_data) = read_array(&mut archive, path, &w_name)?;
        let b_name = format!("b{k}");
        if archive.index_for_name(&format!("{b_name}.npy")).is_none() {
            bail!(
                "{}: has {w_name} but no {b_name} (each layer k needs W{{k}} and b{{k}})",
                path.display()
            );
        }
        let (b_shape, b_data) = read_array(&mut archive, path, &b_name)?;
        let [rows, cols] = w_shape[..] else {
            bail!(
                "{}: {w_name} has shape {:?}, expected 2 dimensions (outputs, inputs)",
                path.display(),
                w_shape
            );
        };
        if b_shape != [rows] {
            bail!(
                "{}: {b_name} has shape {:?}, expected ({rows},) to match {w_name} of shape ({rows}, {cols})",
                path.display(),
                b_shape
            );
        }
        layers.push((
            Mat::from_row_slice(rows, cols, &w_data),
            Vector::from_vec(b_data),
        ));
    }
    if layers.is_empty() {
        let names: Vec<String> = archive
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.to_string()))
            .collect();
        bail!(
            "{}: no array W1 (found: {}); expected W1, b1, W2, b2, … with W{{k}} of shape (outputs, inputs)",
            path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(layers)
}

/// One array of the archive: its shape and its elements in row-major
/// (C) order, as `f32`.
fn read_array<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    path: &Path,
    name: &str,
) -> Result<(Vec<usize>, Vec<f32>)> {
    let mut bytes = Vec::new();
    archive
        .by_name(&format!("{name}.npy"))
        .with_context(|| format!("{}: cannot open array {name}", path.display()))?
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: cannot read array {name}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{}: array {name} is not a valid .npy array", path.display()))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let order = npy.order();
    let type_str = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => bail!(
            "{}: array {name} has the structured type {:?}; expected float32 or float64",
            path.display(),
            other
        ),
    };
    let data: Vec<f32> = match type_str.as_str() {
        "<f4" => npy.into_vec::<f32>(),
        "<f8" => npy
            .into_vec::<f64>()
            .map(|v| v.into_iter().map(|x| x as f32).collect()),
        other => bail!(
            "{}: array {name} has type {other}; expected float32 (<f4) or float64 (<f8)",
            path.display()
        ),
    }
    .with_context(|| format!("{}: cannot decode array {name}", path.display()))?;
    if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: array {name} has a non-finite value at flat index {bad}",
            path.display()
        );
    }
    let data = match (order, &shape[..]) {
        (npyz::Order::Fortran, [rows, cols]) => {
            // Column-major storage: element (i, j) sits at i + j·rows.
            let (rows, cols) = (*rows, *cols);
            let mut c_order = Vec::with_capacity(data.len());
            for i in 0..rows {
                for j in 0..cols {
                    c_order.push(data[i + j * rows]);
                }
            }
            c_order
        }
        _ => data,
    };
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_bit_and_the_layout() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("p.npz");
        let w1 = Mat::from_fn(3, 5, |i, j| (i as f32 + 0.5) * (j as f32 - 1.25) / 7.0);
        let b1 = Vector::from_fn(3, |i, _| i as f32 * 0.1 - 0.3);
        let w2 = Mat::from_fn(2, 3, |i, j| 1e-7 * (i * 3 + j) as f32 - 1.0);
        let b2 = Vector::from_vec(vec![f32::MIN_POSITIVE, -0.0]);
        let params = vec![(w1, b1), (w2, b2)];
        write_parameters(&path, &params).expect("write");
        let back = read_parameters(&path).expect("read");
        assert_eq!(back.len(), 2);
        for ((w, b), (w0, b0)) in back.iter().zip(&params) {
            assert_eq!(w.shape(), w0.shape());
            let bits = |m: &[f32]| m.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(w.as_slice()), bits(w0.as_slice()));
            assert_eq!(bits(b.as_slice()), bits(b0.as_slice()));
        }
    }

    #[test]
    fn a_file_that_is_not_an_archive_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("p.npz");
        std::fs::write(&path, b"not a zip").expect("write");
        let err = format!("{:#}", read_parameters(&path).unwrap_err());
        assert!(err.contains("is not a NumPy .npz file"), "{err}");
    }
}
