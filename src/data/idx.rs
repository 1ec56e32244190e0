//! The IDX file format of MNIST-style datasets (LeCun et al.), raw or gzip.
//!
//! Layout: magic `0x00 0x00 <type> <ndims>`, `ndims` big-endian u32 sizes,
//! then the data. Only unsigned bytes (type `0x08`) are used by MNIST.

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use std::io::Read;

/// A decoded IDX tensor of unsigned bytes.
#[derive(Clone, Debug)]
pub struct IdxArray {
    /// Sizes of each dimension (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// Row-major data.
    pub data: Vec<u8>,
}

/// Decompresses `bytes` if they are gzip (magic `1f 8b`), else returns them.
pub fn maybe_gunzip(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    if bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b {
        let mut out = Vec::with_capacity(bytes.len() * 4);
        GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .with_context(|| format!("{name}: gzip stream is corrupted or truncated"))?;
        Ok(out)
    } else {
        Ok(bytes.to_vec())
    }
}

/// Parses a decompressed IDX byte buffer, checking that its length matches its header.
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<IdxArray> {
    if bytes.len() < 4 {
        bail!(
            "{name}: file is too short to be an IDX file ({} bytes)",
            bytes.len()
        );
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        bail!("{name}: not an IDX file (bad magic number)");
    }
    if bytes[2] != 0x08 {
        bail!(
            "{name}: IDX element type 0x{:02x} is not supported (expected unsigned bytes, 0x08)",
            bytes[2]
        );
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        bail!("{name}: truncated IDX header");
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected: usize = dims.iter().product();
    let actual = bytes.len() - header;
    if actual != expected {
        bail!(
            "{name}: IDX header announces {expected} bytes of data ({dims:?}) but the file holds {actual}: the file is truncated or corrupted"
        );
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}
