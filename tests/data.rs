//! Dataset loading: sizes, pixel range, splits, checksums.

use dyadsim::data::{load, load_raw};
use dyadsim::experiment::config::{DataConfig, DatasetName};
use std::path::PathBuf;

#[test]
fn embedded_mnist_has_the_standard_shape_and_splits() {
    let (train, test) = load_raw(DatasetName::Mnist, None).unwrap();
    assert_eq!((train.images.nrows(), train.len()), (784, 60_000));
    assert_eq!((test.images.nrows(), test.len()), (784, 10_000));
    assert!(train.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
    assert_eq!(train.images.max(), 1.0);
    // Label histogram of the MNIST training set (LeCun et al.): 5923 zeros, 6742 ones.
    assert_eq!(train.labels.iter().filter(|&&l| l == 0).count(), 5923);
    assert_eq!(train.labels.iter().filter(|&&l| l == 1).count(), 6742);
    let cfg = DataConfig::default();
    let d = load(&cfg).unwrap();
    assert_eq!(
        (d.train.len(), d.validation.len(), d.test.len()),
        (50_000, 10_000, 10_000)
    );
    // The validation split is the tail of the training file, disjoint from training.
    assert_eq!(d.validation.labels[..], train.labels[50_000..]);
}

#[test]
fn a_corrupted_file_fails_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist");
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ] {
        std::fs::copy(format!("{src}/{f}"), dir.path().join(f)).unwrap();
    }
    // A well-formed IDX label file of the right size whose contents are wrong.
    let mut raw = vec![0u8, 0, 8, 1, 0, 0, 0x27, 0x10];
    raw.extend(std::iter::repeat_n(3u8, 10_000));
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), raw).unwrap();
    let err = load_raw(DatasetName::Mnist, Some(dir.path())).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("SHA-256") && msg.contains("t10k-labels-idx1-ubyte"),
        "{msg}"
    );
}

#[test]
fn fashion_mnist_loads_from_a_directory_when_available() {
    // CI has the project's shared/ folder beside the clone; developers may have the Debian package.
    let candidates = [
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/fashion-mnist"
        )),
        PathBuf::from("/usr/share/datasets/fashion-mnist"),
    ];
    let Some(dir) = candidates
        .iter()
        .find(|d| d.join("t10k-labels-idx1-ubyte.gz").exists())
    else {
        eprintln!("no Fashion-MNIST copy on this machine: skipped");
        return;
    };
    let (train, test) = load_raw(DatasetName::FashionMnist, Some(dir)).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    // Fashion-MNIST is balanced: 6000 training images per class.
    assert!((0..10).all(|c| train.labels.iter().filter(|&&l| l == c).count() == 6000));
}
