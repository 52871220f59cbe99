//! WAV files in and out: any rate, mono or stereo, 8/16/24/32-bit integer or float, converted
//! to the 8 kHz mono 16-bit samples a G.711 call carries; and recordings written as WAV.
//!
//! The bytes come from the caller (the shell reads the file), so this stays sans-IO. Rate
//! conversion uses `rubato`'s FFT resampler, which is band-limited: content above the new
//! Nyquist frequency (4 kHz) is filtered out instead of folding back as aliases, as sample
//! dropping would.

use std::io::Cursor;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// The sample rate of G.711 audio.
pub const RATE: u32 = 8_000;

/// Why a WAV file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// Not a WAV file hound can read (or a corrupt one).
    #[error("not a readable WAV file: {0}")]
    Format(String),
    /// A format hound reads but sipcheck does not convert.
    #[error("unsupported WAV format: {0}")]
    Unsupported(String),
    /// The resampler failed.
    #[error("cannot resample from {from} Hz: {reason}")]
    Resample {
        /// The file's rate.
        from: u32,
        /// Why.
        reason: String,
    },
}

/// Decode a WAV file's bytes to 8 kHz mono samples (channels are averaged).
pub fn decode(bytes: &[u8]) -> Result<Vec<i16>, WavError> {
    let reader =
        hound::WavReader::new(Cursor::new(bytes)).map_err(|e| WavError::Format(e.to_string()))?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.channels > 8 {
        return Err(WavError::Unsupported(format!("{} channels", spec.channels)));
    }
    if spec.sample_rate < 1_000 || spec.sample_rate > 384_000 {
        return Err(WavError::Unsupported(format!(
            "sample rate {} Hz",
            spec.sample_rate
        )));
    }
    let samples: Vec<f64> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .map(|s| s.map(f64::from))
            .collect::<Result<_, _>>(),
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = f64::from(1u32 << (bits - 1));
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| f64::from(v) / scale))
                .collect::<Result<_, _>>()
        }
        (format, bits) => {
            return Err(WavError::Unsupported(format!(
                "{bits}-bit {format:?} samples"
            )))
        }
    }
    .map_err(|e| WavError::Format(e.to_string()))?;

    let channels = usize::from(spec.channels);
    let mono: Vec<f64> = samples
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f64>() / channels as f64)
        .collect();
    let resampled = resample(&mono, spec.sample_rate)?;
    Ok(resampled.iter().map(|&s| to_i16(s)).collect())
}

/// Resample mono `input` at `from` Hz to 8 kHz.
pub fn resample(input: &[f64], from: u32) -> Result<Vec<f64>, WavError> {
    if from == RATE || input.is_empty() {
        return Ok(input.to_vec());
    }
    let err = |e: &dyn std::fmt::Display| WavError::Resample {
        from,
        reason: e.to_string(),
    };
    let mut resampler = Fft::<f64>::new(from as usize, RATE as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| err(&e))?;
    let out_len = resampler.process_all_needed_output_len(input.len());
    let mut output = vec![0.0; out_len];
    let buffer_in = InterleavedSlice::new(input, 1, input.len()).map_err(|e| err(&e))?;
    let mut buffer_out = InterleavedSlice::new_mut(&mut output, 1, out_len).map_err(|e| err(&e))?;
    let (_, written) = resampler
        .process_all_into_buffer(&buffer_in, &mut buffer_out, input.len(), None)
        .map_err(|e| err(&e))?;
    output.truncate(written);
    Ok(output)
}

fn to_i16(sample: f64) -> i16 {
    (sample * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// Encode 8 kHz mono samples as a 16-bit PCM WAV file.
pub fn encode(samples: &[i16]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    {
        let mut writer = hound::WavWriter::new(&mut out, spec).expect("writing to memory");
        let mut w = writer.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w.write_sample(s);
        }
        w.flush().expect("writing to memory");
        writer.finalize().expect("writing to memory");
    }
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::{DetectorConfig, ToneDetector, ToneQuery};

    fn wav(rate: u32, channels: u16, bits: u16, float: bool, seconds: f64, hz: f64) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut out = Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
            let n = (f64::from(rate) * seconds) as usize;
            for i in 0..n {
                let v = 0.5 * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin();
                for _ in 0..channels {
                    if float {
                        w.write_sample(v as f32).unwrap();
                    } else {
                        let scale = f64::from(1u32 << (bits - 1)) - 1.0;
                        w.write_sample((v * scale) as i32).unwrap();
                    }
                }
            }
            w.finalize().unwrap();
        }
        out.into_inner()
    }

    fn detects(samples: &[i16], hz: f64) -> bool {
        let mut d = ToneDetector::new(DetectorConfig::default()).unwrap();
        let id = d.watch(ToneQuery::single(hz).unwrap()).unwrap();
        d.push(samples);
        d.is_complete(id)
    }

    #[test]
    fn every_supported_format_becomes_8k_mono_with_the_tone_intact() {
        let cases = [
            (8_000, 1, 16, false),
            (16_000, 1, 16, false),
            (44_100, 2, 16, false),
            (48_000, 2, 24, false),
            (22_050, 1, 8, false),
            (48_000, 1, 32, true),
            (32_000, 2, 32, false),
        ];
        for (rate, channels, bits, float) in cases {
            let samples = decode(&wav(rate, channels, bits, float, 1.0, 1000.0)).unwrap();
            let expected = RATE as usize;
            assert!(
                samples.len().abs_diff(expected) <= 8,
                "{rate} Hz {channels} ch {bits} bit: {} samples",
                samples.len()
            );
            assert!(
                detects(&samples, 1000.0),
                "{rate} Hz {channels} ch {bits} bit"
            );
        }
    }

    #[test]
    fn content_above_4khz_is_filtered_not_aliased() {
        // 6 kHz at 16 kHz would alias to 2 kHz if samples were simply dropped.
        let samples = decode(&wav(16_000, 1, 16, false, 1.0, 6000.0)).unwrap();
        assert!(!detects(&samples, 2000.0), "6 kHz aliased to 2 kHz");
        let rms = crate::media::rms_dbfs(&samples[800..]);
        assert!(rms < -40.0, "6 kHz not filtered: {rms} dBFS");
    }

    #[test]
    fn garbage_and_unsupported_formats_are_errors() {
        assert!(matches!(decode(b"RIFF1234WAVE"), Err(WavError::Format(_))));
        assert!(matches!(decode(b""), Err(WavError::Format(_))));
    }

    #[test]
    fn recording_round_trips() {
        let samples: Vec<i16> = (0..800).map(|i| (i * 37 % 2000) as i16 - 1000).collect();
        assert_eq!(decode(&encode(&samples)).unwrap(), samples);
    }
}
