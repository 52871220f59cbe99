//! Reading a scenario file: the text, the environment, the files it names (CSV accounts,
//! WAV prompts), overrides from `--set`; then the core validates it all at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sipcheck_core::media::wav;
use sipcheck_core::media::{matching, pesq};
use sipcheck_core::scenario::model::{Expectation, PlayItem, Step};
use sipcheck_core::scenario::{self, Scenario, ScenarioError};

use crate::exec::Wavs;

/// Why a scenario cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The path given.
        path: String,
        /// Why.
        reason: String,
    },
    /// The scenario is invalid: every problem, formatted `file:line:col: message`.
    #[error("{}", scenario::report(.0))]
    Invalid(Vec<ScenarioError>),
}

/// A path as written in a scenario: relative to the working directory, else to the
/// scenario's own directory.
fn resolve(base: &Path, written: &str) -> PathBuf {
    let direct = PathBuf::from(written);
    if direct.is_absolute() || direct.exists() {
        direct
    } else {
        base.join(written)
    }
}

/// The largest accounts (CSV) file read: 100,000 accounts of some 60 bytes each, with room.
const MAX_ACCOUNTS_FILE_BYTES: u64 = 16 << 20;

/// The text of the file at `path`, refused (without reading it all) when it is longer than
/// `limit` bytes.
fn read_limited(path: &Path, limit: u64) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "longer than {} MiB, the most sipcheck reads of such a file",
            limit >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// Load and validate `path` with `overrides` (`key=value` strings from `--set`), decoding
/// every WAV file it plays.
pub fn load(path: &str, overrides: &[String]) -> Result<(Scenario, Wavs), LoadError> {
    load_with(path, overrides, WavUse::Decode)
}

/// Validate `path` with `overrides` as [`load`] does, reading only the headers of the WAV files
/// it plays (their format and length are checked, their samples are not decoded).
pub fn validate(path: &str, overrides: &[String]) -> Result<Scenario, LoadError> {
    load_with(path, overrides, WavUse::Inspect).map(|(scenario, _)| scenario)
}

/// What loading does with a scenario's WAV files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WavUse {
    /// Decode them, once each, to play.
    Decode,
    /// Check their headers only.
    Inspect,
}

/// A WAV file's header, checked, and the file long enough for the samples it announces (the
/// file is read up to its samples only).
fn inspect_wav(path: &Path) -> Result<wav::WavInfo, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let info = wav::inspect(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    info.fits(len).map_err(|e| e.to_string())?;
    Ok(info)
}

/// A WAV file decoded to 8 kHz as it is read: never held whole in memory.
fn decode_wav(path: &Path) -> Result<Arc<[i16]>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    wav::decode_from(std::io::BufReader::with_capacity(64 << 10, file), len)
        .map_err(|e| e.to_string())
}

fn load_with(
    path: &str,
    overrides: &[String],
    use_wavs: WavUse,
) -> Result<(Scenario, Wavs), LoadError> {
    let text = read_limited(Path::new(path), scenario::MAX_SCENARIO_BYTES).map_err(|reason| {
        LoadError::Read {
            path: path.to_string(),
            reason,
        }
    })?;
    let base = Path::new(path)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let parsed: Vec<(String, String)> = overrides
        .iter()
        .map(|o| scenario::parse_override(o))
        .collect::<Result<_, _>>()
        .map_err(|e| LoadError::Invalid(vec![e]))?;
    let env = |name: &str| std::env::var(name).ok();
    let files = |written: &str| -> Result<String, String> {
        let p = resolve(&base, written);
        // WAV files are binary: a readable file is enough at this stage.
        if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")) {
            return std::fs::metadata(&p)
                .map(|_| String::new())
                .map_err(|e| e.to_string());
        }
        read_limited(&p, MAX_ACCOUNTS_FILE_BYTES)
    };
    let scenario = scenario::load_with_overrides(path, &text, &parsed, &env, &files)
        .map_err(LoadError::Invalid)?;

    // Decode every WAV once (many calls share the samples), or read its header only.
    let mut wavs: Wavs = HashMap::new();
    let mut errors = Vec::new();
    for role in &scenario.roles {
        for step in &role.steps {
            // The files a step plays, and the reference an `expect: pesq` scores against.
            let (files, reference): (Vec<&String>, bool) = match &step.value {
                Step::Play(items) => (
                    items
                        .iter()
                        .filter_map(|item| match item {
                            PlayItem::Wav { path } => Some(path),
                            _ => None,
                        })
                        .collect(),
                    false,
                ),
                Step::Expect(Expectation::Pesq { reference, .. }) => (vec![reference], true),
                Step::Expect(Expectation::Matches { reference, .. }) => (vec![reference], true),
                _ => continue,
            };
            for written in files {
                if wavs.contains_key(written) && !reference {
                    continue;
                }
                let p = resolve(&base, written);
                let checked = match use_wavs {
                    WavUse::Decode => decode_wav(&p).map(|s| (s.len(), Some(s))),
                    WavUse::Inspect => inspect_wav(&p).map(|i| {
                        let frames = u64::from(i.frames) * 8000 / u64::from(i.sample_rate.max(1));
                        (usize::try_from(frames).unwrap_or(usize::MAX), None)
                    }),
                };
                let checked = checked.and_then(|(len, samples)| {
                    let matching = matches!(step.value, Step::Expect(Expectation::Matches { .. }));
                    if matching
                        && !(matching::MIN_REFERENCE_SAMPLES..=matching::MAX_REFERENCE_SAMPLES)
                            .contains(&len)
                    {
                        return Err(format!(
                            "a reference to match lasts {} s to {} s; this one lasts {:.1} s",
                            matching::MIN_REFERENCE_SAMPLES as f64 / 8000.0,
                            matching::MAX_REFERENCE_SAMPLES / 8000,
                            len as f64 / 8000.0
                        ));
                    }
                    if reference
                        && !matching
                        && !(pesq::MIN_REFERENCE_SAMPLES..=pesq::MAX_REFERENCE_SAMPLES)
                            .contains(&len)
                    {
                        return Err(format!(
                            "a PESQ reference lasts {} s to {} s; this one lasts {:.1} s",
                            pesq::MIN_REFERENCE_SAMPLES / 8000,
                            pesq::MAX_REFERENCE_SAMPLES / 8000,
                            len as f64 / 8000.0
                        ));
                    }
                    Ok(samples)
                });
                let verb = match step.value {
                    Step::Expect(Expectation::Matches { .. }) => "match against",
                    _ if reference => "score against",
                    _ => "play",
                };
                match checked {
                    Ok(Some(samples)) => {
                        wavs.insert(written.clone(), samples);
                    }
                    Ok(None) => {}
                    Err(reason) => errors.push(ScenarioError {
                        file: path.to_string(),
                        line: step.line,
                        col: step.col,
                        message: format!("cannot {verb} {written}: {reason}"),
                        source_line: text
                            .lines()
                            .nth(step.line.saturating_sub(1) as usize)
                            .unwrap_or_default()
                            .to_string(),
                        hint: None,
                    }),
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(LoadError::Invalid(errors));
    }
    Ok((scenario, wavs))
}
