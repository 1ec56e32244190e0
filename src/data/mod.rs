//! Datasets: MNIST (shipped in `data/mnist`, embedded in the binary) and
//! Fashion-MNIST (from `--data-dir` or the Debian package
//! `dataset-fashion-mnist`), loaded from IDX files, SHA-256-checked, with
//! pixels scaled to [0, 1], split and batched.

pub mod idx;

use crate::linalg::Mat;
use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Which dataset (TOML `[data]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `mnist` (embedded) or `fashion_mnist`.
    pub dataset: DatasetName,
    /// Where to look for the IDX files first (then the standard locations).
    pub data_dir: Option<PathBuf>,
    /// Training images used (the first N of the 60,000); the rest up to
    /// 60,000 − `validation_size`… see `validation_size`.
    pub train_size: usize,
    /// Validation images, taken after the first 50,000 training images
    /// (0 disables validation).
    pub validation_size: usize,
    /// Test images used (the first N of the 10,000).
    pub test_size: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetName::Mnist,
            data_dir: None,
            train_size: 50_000,
            validation_size: 10_000,
            test_size: 10_000,
        }
    }
}

/// A dataset name.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum DatasetName {
    /// MNIST handwritten digits (shipped in `data/mnist`).
    Mnist,
    /// Fashion-MNIST (Debian package `dataset-fashion-mnist` or `--data-dir`).
    #[serde(alias = "fashion-mnist")]
    FashionMnist,
}

impl DatasetName {
    /// The dataset's usual name (`MNIST`, `Fashion-MNIST`), for messages and reports.
    pub fn display_name(&self) -> &'static str {
        match self {
            DatasetName::Mnist => "MNIST",
            DatasetName::FashionMnist => "Fashion-MNIST",
        }
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Classes of both datasets (the digits 0–9; ten kinds of clothing): the
/// width of a network's output layer.
pub const CLASSES: usize = 10;

/// Image/label file names of an MNIST-style dataset.
const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Number of training images kept for training by default; the rest of the
/// 60,000 forms the validation split.
pub const DEFAULT_TRAIN_IMAGES: usize = 50_000;

const MNIST_SUMS: &str = include_str!("../../data/mnist/SHA256SUMS.idx");
const FASHION_SUMS: &str = include_str!("../../data/fashion-mnist/SHA256SUMS.idx");

/// The embedded MNIST files (gzip), so `dyadsim train` works from anywhere.
const MNIST_EMBEDDED: [&[u8]; 4] = [
    include_bytes!("../../data/mnist/train-images-idx3-ubyte.gz"),
    include_bytes!("../../data/mnist/train-labels-idx1-ubyte.gz"),
    include_bytes!("../../data/mnist/t10k-images-idx3-ubyte.gz"),
    include_bytes!("../../data/mnist/t10k-labels-idx1-ubyte.gz"),
];

/// Where Debian's `dataset-fashion-mnist` installs its files.
pub const FASHION_SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// A set of images (as `784 × N`, one column per image, pixels in [0, 1]) and labels.
#[derive(Clone, Debug)]
pub struct Split {
    /// Pixels, column-major, one image per column.
    pub images: Mat,
    /// Class labels 0..=9.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Input width (784 for MNIST).
    pub fn input_width(&self) -> usize {
        self.images.nrows()
    }

    /// Copies the examples `indices` into a batch: inputs `n × B`, one-hot targets `classes × B`.
    pub fn batch(&self, indices: &[usize], classes: usize, x: &mut Mat, y: &mut Mat) {
        let n = self.images.nrows();
        crate::linalg::ensure_shape(x, n, indices.len());
        crate::linalg::ensure_shape(y, classes, indices.len());
        y.fill(0.0);
        let src = self.images.as_slice();
        for (j, &i) in indices.iter().enumerate() {
            x.as_mut_slice()[j * n..(j + 1) * n].copy_from_slice(&src[i * n..(i + 1) * n]);
            let label = self.labels[i] as usize;
            if label < classes {
                y[(label, j)] = 1.0;
            }
        }
    }

    /// The first `count` examples.
    pub fn truncated(&self, count: usize) -> Split {
        let count = count.min(self.len());
        Split {
            images: self.images.columns(0, count).into_owned(),
            labels: self.labels[..count].to_vec(),
        }
    }
}

/// Training, validation and test splits of one dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Dataset name, for reports.
    pub name: DatasetName,
    /// Training examples (the first `train_size` training images).
    pub train: Split,
    /// Validation examples (training images after the first 50,000, or after `train_size` if larger).
    pub validation: Split,
    /// Test examples.
    pub test: Split,
}

/// Shuffled mini-batch index lists for one epoch (the last batch may be smaller).
pub fn epoch_batches<R: Rng>(len: usize, batch: usize, rng: &mut R) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(rng);
    order.chunks(batch).map(|c| c.to_vec()).collect()
}

fn expected_sums(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .map(|(h, f)| (f, h))
        .collect()
}

fn how_to_get(name: DatasetName) -> &'static str {
    match name {
        DatasetName::Mnist => "MNIST ships with dyadsim in data/mnist/ (restore it with `git checkout data/mnist`) or pass --data-dir DIR holding the four IDX files",
        DatasetName::FashionMnist => "install the Debian package with `apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist), or pass --data-dir DIR holding train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz) and t10k-labels-idx1-ubyte(.gz) from https://github.com/zalandoresearch/fashion-mnist",
    }
}

/// Reads one IDX file (`NAME` or `NAME.gz`) from `dir`.
fn read_from_dir(dir: &Path, file: &str) -> Result<Option<(PathBuf, Vec<u8>)>> {
    for candidate in [dir.join(format!("{file}.gz")), dir.join(file)] {
        if candidate.is_file() {
            let bytes = std::fs::read(&candidate)
                .with_context(|| format!("cannot read {}", candidate.display()))?;
            return Ok(Some((candidate, bytes)));
        }
    }
    Ok(None)
}

/// Decompresses, checks the SHA-256 of the decompressed bytes, parses.
fn decode_checked(
    bytes: &[u8],
    label: &str,
    file: &str,
    sums: &[(String, String)],
    name: DatasetName,
) -> Result<idx::IdxArray> {
    let raw = idx::maybe_gunzip(bytes, label).with_context(|| how_to_get(name))?;
    if let Some((_, expected)) = sums.iter().find(|(f, _)| f == file) {
        let actual = format!("{:x}", Sha256::digest(&raw));
        if &actual != expected {
            bail!(
                "{label}: SHA-256 of the decompressed file is {actual}, expected {expected}: the file is corrupted, truncated or not the {name} file; {}",
                how_to_get(name)
            );
        }
    }
    idx::parse_idx(&raw, label).with_context(|| how_to_get(name))
}

fn images_to_matrix(arr: &idx::IdxArray, label: &str) -> Result<Mat> {
    if arr.dims.len() != 3 {
        bail!(
            "{label}: expected a 3-dimensional image array, found dims {:?}",
            arr.dims
        );
    }
    let (n, pixels) = (arr.dims[0], arr.dims[1] * arr.dims[2]);
    Ok(Mat::from_iterator(
        pixels,
        n,
        arr.data.iter().map(|&p| p as f32 / 255.0),
    ))
}

/// Loads the four IDX files of a dataset, verified against the known SHA-256 sums.
pub fn load_raw(name: DatasetName, data_dir: Option<&Path>) -> Result<(Split, Split)> {
    let sums = expected_sums(match name {
        DatasetName::Mnist => MNIST_SUMS,
        DatasetName::FashionMnist => FASHION_SUMS,
    });
    if let Some(dir) = data_dir {
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "data.data_dir {}: {}; it should hold {} (raw or .gz)",
                    dir.display(),
                    if dir.exists() {
                        "is not a directory"
                    } else {
                        "does not exist"
                    },
                    FILES.join(", ")
                ),
            )
            .into());
        }
        std::fs::read_dir(dir).with_context(|| {
            format!("data.data_dir {}: cannot read the directory", dir.display())
        })?;
    }
    let mut arrays = Vec::with_capacity(4);
    for (i, file) in FILES.iter().enumerate() {
        let found = match data_dir {
            Some(dir) => read_from_dir(dir, file)?,
            None => None,
        };
        let arr = match (found, name) {
            (Some((path, bytes)), _) => {
                decode_checked(&bytes, &path.display().to_string(), file, &sums, name)?
            }
            (None, DatasetName::Mnist) if data_dir.is_some() => {
                // A directory was named: using the embedded copy instead
                // would silently train on other data than the user meant.
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "MNIST file {file}(.gz) not found in data.data_dir {} (looked for {file}.gz and {file}; the directory should hold {}); leave data.data_dir unset to use the MNIST embedded in dyadsim",
                        data_dir.map_or_else(String::new, |d| d.display().to_string()),
                        FILES.join(", ")
                    ),
                )
                .into());
            }
            (None, DatasetName::Mnist) => decode_checked(
                MNIST_EMBEDDED[i],
                &format!("embedded data/mnist/{file}.gz"),
                file,
                &sums,
                name,
            )?,
            (None, DatasetName::FashionMnist) => {
                match read_from_dir(Path::new(FASHION_SYSTEM_DIR), file)? {
                    Some((path, bytes)) => {
                        decode_checked(&bytes, &path.display().to_string(), file, &sums, name)?
                    }
                    None => {
                        let looked = match data_dir {
                            Some(d) => format!("{} and {FASHION_SYSTEM_DIR}", d.display()),
                            None => FASHION_SYSTEM_DIR.to_string(),
                        };
                        // An I/O "not found" underneath, so that callers
                        // (the Python binding: `OSError`) can tell it from
                        // a bad argument.
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!(
                                "Fashion-MNIST file {file}(.gz) not found in {looked}: {}",
                                how_to_get(name)
                            ),
                        )
                        .into());
                    }
                }
            }
        };
        arrays.push((file, arr));
    }
    let train_images = images_to_matrix(&arrays[0].1, arrays[0].0)?;
    let test_images = images_to_matrix(&arrays[2].1, arrays[2].0)?;
    let train_labels = arrays[1].1.data.clone();
    let test_labels = arrays[3].1.data.clone();
    if train_images.ncols() != train_labels.len() || test_images.ncols() != test_labels.len() {
        bail!("{name:?}: image and label counts differ");
    }
    Ok((
        Split {
            images: train_images,
            labels: train_labels,
        },
        Split {
            images: test_images,
            labels: test_labels,
        },
    ))
}

/// Loads a dataset and splits it as configured: training = the first
/// `train_size` images; validation = `validation_size` images starting at
/// max(50,000, train_size); test = the first `test_size` test images.
pub fn load(config: &DataConfig) -> Result<Dataset> {
    let (train_all, test_all) = load_raw(config.dataset, config.data_dir.as_deref())?;
    let n = train_all.len();
    if config.train_size > n {
        bail!(
            "data.train_size = {} exceeds the {n} training images",
            config.train_size
        );
    }
    let train = train_all.truncated(config.train_size);
    let val_start = config.train_size.max(DEFAULT_TRAIN_IMAGES).min(n);
    let val_end = (val_start + config.validation_size).min(n);
    let validation = Split {
        images: train_all
            .images
            .columns(val_start, val_end - val_start)
            .into_owned(),
        labels: train_all.labels[val_start..val_end].to_vec(),
    };
    Ok(Dataset {
        name: config.dataset,
        train,
        validation,
        test: test_all.truncated(config.test_size),
    })
}
