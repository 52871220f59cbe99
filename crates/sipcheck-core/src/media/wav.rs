//! WAV files in and out: any rate, mono or stereo, 8/16/24/32-bit integer or float, converted
//! to the 8 kHz mono 16-bit samples a G.711 call carries; and recordings written as WAV.
//!
//! The caller supplies the bytes as a reader (the shell opens the file), so this stays sans-IO.
//! A file is decoded as it is read, a chunk at a time: memory is the result (2 bytes per 8 kHz
//! sample, [`MAX_SECONDS`] at most) plus a few kilobytes, never the file itself nor a wide
//! intermediate copy of it. [`inspect`] reads the header only, for validation. Rate conversion
//! uses `rubato`'s FFT resampler, which is band-limited: content above the new Nyquist
//! frequency (4 kHz) is filtered out instead of folding back as aliases, as sample dropping
//! would.

use std::io::{Cursor, Read};
use std::sync::Arc;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

/// The sample rate of G.711 audio.
pub const RATE: u32 = 8_000;

/// The longest WAV file played: 4 hours, 230 MB once converted to 8 kHz 16-bit samples.
pub const MAX_SECONDS: u32 = 4 * 3600;

/// Why a WAV file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// Not a WAV file hound can read (or a corrupt one).
    #[error("not a readable WAV file: {0}")]
    Format(String),
    /// A format hound reads but sipcheck does not convert.
    #[error("unsupported WAV format: {0}")]
    Unsupported(String),
    /// Longer than [`MAX_SECONDS`].
    #[error("{seconds} s of audio, longer than the {max} s sipcheck plays", max = MAX_SECONDS)]
    TooLong {
        /// The file's length (as its header says, or as far as it was read).
        seconds: u64,
    },
    /// The resampler failed.
    #[error("cannot resample from {from} Hz: {reason}")]
    Resample {
        /// The file's rate.
        from: u32,
        /// Why.
        reason: String,
    },
}

/// What a WAV file's header says, checked: a format sipcheck converts, and not too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels (averaged into one).
    pub channels: u16,
    /// Frames (samples per channel), as the header says.
    pub frames: u32,
    /// The bytes of samples, as the header says.
    pub data_bytes: u64,
}

impl WavInfo {
    /// Check that a file of `file_len` bytes can hold the samples the header announces.
    pub fn fits(&self, file_len: u64) -> Result<(), WavError> {
        if self.data_bytes > file_len {
            return Err(WavError::Format(format!(
                "the header announces {} bytes of samples, the file has {file_len} bytes in all",
                self.data_bytes
            )));
        }
        Ok(())
    }

    /// The length in whole seconds, rounded up.
    pub fn seconds(&self) -> u64 {
        u64::from(self.frames).div_ceil(u64::from(self.sample_rate))
    }
}

/// Read a WAV file's header only (up to the start of its samples) and check that sipcheck can
/// play it: what validation needs, without decoding.
pub fn inspect<R: Read>(source: R) -> Result<WavInfo, WavError> {
    open(source).map(|(_, info)| info)
}

/// The most bytes of chunks before the samples (format, metadata) read.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// A G.711 WAV file's samples.
#[derive(Debug, Clone, Copy)]
enum Law {
    A,
    Mu,
}

/// A file opened up to its samples.
enum Opened<R: Read> {
    /// Linear PCM or float, which hound reads (the header bytes read first, then the rest).
    Hound(hound::WavReader<std::io::Chain<Cursor<Vec<u8>>, R>>),
    /// A-law or µ-law, one byte a sample, read here.
    G711 { law: Law, data: std::io::Take<R> },
}

/// What the RIFF chunks before the samples say.
struct Header {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    data_len: u32,
}

fn read_exact<R: Read>(source: &mut R, buf: &mut [u8], read: &mut Vec<u8>) -> Result<(), WavError> {
    source
        .read_exact(buf)
        .map_err(|e| WavError::Format(format!("the header ends early: {e}")))?;
    read.extend_from_slice(buf);
    if read.len() > MAX_HEADER_BYTES {
        return Err(WavError::Format(format!(
            "more than {MAX_HEADER_BYTES} bytes of chunks before the samples"
        )));
    }
    Ok(())
}

/// Read the RIFF chunks up to the start of the samples, keeping the bytes read in `read`.
fn read_header<R: Read>(source: &mut R, read: &mut Vec<u8>) -> Result<Header, WavError> {
    let mut riff = [0u8; 12];
    read_exact(source, &mut riff, read)?;
    if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(WavError::Format("no RIFF WAVE header".into()));
    }
    let mut format: Option<(u16, u16, u32, u16)> = None;
    loop {
        let mut chunk = [0u8; 8];
        read_exact(source, &mut chunk, read)?;
        let len = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        if &chunk[0..4] == b"data" {
            let (tag, channels, rate, bits) = format
                .ok_or_else(|| WavError::Format("no `fmt ` chunk before the samples".into()))?;
            return Ok(Header {
                tag,
                channels,
                rate,
                bits,
                data_len: len,
            });
        }
        // Chunks are padded to an even length.
        let padded = len as usize + (len as usize & 1);
        if padded > MAX_HEADER_BYTES {
            return Err(WavError::Format(format!(
                "more than {MAX_HEADER_BYTES} bytes of chunks before the samples"
            )));
        }
        let mut body = vec![0u8; padded];
        read_exact(source, &mut body, read)?;
        if &chunk[0..4] == b"fmt " {
            if len < 16 {
                return Err(WavError::Format(
                    "a `fmt ` chunk shorter than 16 bytes".into(),
                ));
            }
            let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            let mut tag = u16_at(0);
            // WAVE_FORMAT_EXTENSIBLE: the format is the sub-format GUID's first two bytes.
            if tag == 0xFFFE && len >= 26 {
                tag = u16_at(24);
            }
            let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            format = Some((tag, u16_at(2), rate, u16_at(14)));
        }
    }
}

/// The name of a WAV format tag sipcheck does not read.
fn format_name(tag: u16) -> String {
    let name = match tag {
        0x0002 => "Microsoft ADPCM",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0040 | 0x0064 => "G.721 ADPCM",
        0x0050 => "MPEG",
        0x0055 => "MP3",
        _ => "compressed",
    };
    format!("{name} samples (format tag {tag:#06x})")
}

fn check(info: &WavInfo) -> Result<(), WavError> {
    if info.channels == 0 || info.channels > 8 {
        return Err(WavError::Unsupported(format!("{} channels", info.channels)));
    }
    if info.sample_rate < 1_000 || info.sample_rate > 384_000 {
        return Err(WavError::Unsupported(format!(
            "sample rate {} Hz",
            info.sample_rate
        )));
    }
    if info.seconds() > u64::from(MAX_SECONDS) {
        return Err(WavError::TooLong {
            seconds: info.seconds(),
        });
    }
    Ok(())
}

fn open<R: Read>(mut source: R) -> Result<(Opened<R>, WavInfo), WavError> {
    let mut read = Vec::new();
    let header = read_header(&mut source, &mut read)?;
    let law = match header.tag {
        1 | 3 => None,
        6 => Some(Law::A),
        7 => Some(Law::Mu),
        tag => return Err(WavError::Unsupported(format_name(tag))),
    };
    if let Some(law) = law {
        if header.bits != 8 {
            return Err(WavError::Unsupported(format!(
                "{}-bit {law:?}-law samples (G.711 is 8-bit)",
                header.bits
            )));
        }
        let info = WavInfo {
            sample_rate: header.rate,
            channels: header.channels,
            frames: header.data_len / u32::from(header.channels.max(1)),
            data_bytes: u64::from(header.data_len),
        };
        check(&info)?;
        let data = source.take(u64::from(header.data_len));
        return Ok((Opened::G711 { law, data }, info));
    }
    let data_bytes = u64::from(header.data_len);
    let reader = hound::WavReader::new(Cursor::new(read).chain(source))
        .map_err(|e| WavError::Format(e.to_string()))?;
    let spec = reader.spec();
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) | (hound::SampleFormat::Int, 8 | 16 | 24 | 32) => {}
        (format, bits) => {
            return Err(WavError::Unsupported(format!(
                "{bits}-bit {format:?} samples"
            )))
        }
    }
    let info = WavInfo {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        frames: reader.duration(),
        data_bytes,
    };
    check(&info)?;
    Ok((Opened::Hound(reader), info))
}

/// Decode a WAV file's bytes to 8 kHz mono samples (channels are averaged).
pub fn decode(bytes: &[u8]) -> Result<Arc<[i16]>, WavError> {
    decode_from(bytes, bytes.len() as u64)
}

/// Decode a WAV file to 8 kHz mono samples (channels are averaged), reading `source` as it
/// goes: give it a buffered reader. Memory is the result, allocated once at its final size
/// from the header, plus a few kilobytes. Linear PCM, float, A-law and µ-law are read.
/// `file_len` is the file's length: a header that claims more samples than the file can hold
/// is refused before anything is allocated for them.
pub fn decode_from<R: Read>(source: R, file_len: u64) -> Result<Arc<[i16]>, WavError> {
    let (opened, info) = open(source)?;
    info.fits(file_len)?;
    let mut sink = Sink::new(info.sample_rate, info.frames as usize)?;
    let channels = usize::from(info.channels);
    let (mut sum, mut count) = (0.0f64, 0usize);
    let mut add = |value: f64, sink: &mut Sink| -> Result<(), WavError> {
        // Float files may hold NaN, infinities or values past full scale: they are clipped
        // (NaN is silence), as the resampler's FFT cannot take them.
        let value = if value.is_nan() {
            0.0
        } else {
            value.clamp(-1.0, 1.0)
        };
        sum += value;
        count += 1;
        if count == channels {
            let mono = sum / channels as f64;
            (sum, count) = (0.0, 0);
            sink.push(mono)?;
        }
        Ok(())
    };
    let format = |e: hound::Error| WavError::Format(e.to_string());
    match opened {
        Opened::Hound(mut reader) => {
            if reader.spec().sample_format == hound::SampleFormat::Float {
                for sample in reader.samples::<f32>() {
                    add(f64::from(sample.map_err(format)?), &mut sink)?;
                }
            } else {
                let scale = f64::from(1u32 << (reader.spec().bits_per_sample - 1));
                for sample in reader.samples::<i32>() {
                    add(f64::from(sample.map_err(format)?) / scale, &mut sink)?;
                }
            }
        }
        Opened::G711 { law, mut data } => {
            let expected = data.limit();
            let mut got = 0u64;
            let mut buf = [0u8; 4096];
            loop {
                let n = data
                    .read(&mut buf)
                    .map_err(|e| WavError::Format(e.to_string()))?;
                if n == 0 {
                    break;
                }
                got += n as u64;
                for &code in &buf[..n] {
                    let linear = match law {
                        Law::A => super::g711::alaw_decode(code),
                        Law::Mu => super::g711::ulaw_decode(code),
                    };
                    add(f64::from(linear) / 32_768.0, &mut sink)?;
                }
            }
            if got < expected {
                return Err(WavError::Format(format!(
                    "the file ends after {got} of its {expected} bytes of samples"
                )));
            }
        }
    }
    sink.finish()
}

/// Mono samples at the file's rate in, 8 kHz 16-bit samples out, a chunk at a time: the same
/// samples [`resample`] gives for the whole clip at once.
struct Sink {
    out: Output,
    resampling: Option<Resampling>,
}

/// The decoded samples, allocated once at their final length and filled in order.
struct Output {
    samples: Arc<[i16]>,
    filled: usize,
}

impl Output {
    fn new(len: usize) -> Self {
        Self {
            // From an iterator of known length, the Arc is allocated once, at its size.
            samples: std::iter::repeat_n(0, len).collect(),
            filled: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.filled == self.samples.len()
    }

    /// Append `sample`; beyond the expected length (the resampler's padding), drop it.
    fn push(&mut self, sample: i16) {
        if let Some(slot) = Arc::get_mut(&mut self.samples).and_then(|s| s.get_mut(self.filled)) {
            *slot = sample;
            self.filled += 1;
        }
    }
}

struct Resampling {
    from: u32,
    resampler: Fft<f64>,
    /// One input chunk, `filled` of it received.
    chunk: Vec<f64>,
    filled: usize,
    output: Vec<f64>,
    /// The resampler's delay still to drop from the start of the output.
    to_trim: usize,
}

impl Sink {
    /// For `frames` frames at `from` Hz.
    fn new(from: u32, frames: usize) -> Result<Self, WavError> {
        let (resampling, len) = if from == RATE {
            (None, frames)
        } else {
            let resampler =
                Fft::<f64>::new(from as usize, RATE as usize, 1024, 1, FixedSync::Input)
                    .map_err(|e| resample_error(from, &e))?;
            let len = (resampler.resample_ratio() * frames as f64).ceil() as usize;
            let resampling = Resampling {
                from,
                chunk: vec![0.0; resampler.input_frames_next()],
                filled: 0,
                output: vec![0.0; resampler.output_frames_max()],
                to_trim: resampler.output_delay(),
                resampler,
            };
            (Some(resampling), len)
        };
        Ok(Self {
            out: Output::new(len),
            resampling,
        })
    }

    fn push(&mut self, sample: f64) -> Result<(), WavError> {
        match &mut self.resampling {
            None => self.out.push(to_i16(sample)),
            Some(r) => {
                r.chunk[r.filled] = sample;
                r.filled += 1;
                if r.filled == r.chunk.len() {
                    r.process(None, &mut self.out)?;
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Arc<[i16]>, WavError> {
        if let Some(r) = &mut self.resampling {
            if r.filled > 0 {
                let partial = r.filled;
                r.process(Some(partial), &mut self.out)?;
            }
            // The resampler's delay: silence in, the last samples out.
            while !self.out.is_full() {
                r.process(Some(0), &mut self.out)?;
            }
        }
        Ok(self.out.samples)
    }
}

impl Resampling {
    /// Resample the chunk (`partial`: only that many frames of it, the rest silence).
    fn process(&mut self, partial: Option<usize>, out: &mut Output) -> Result<(), WavError> {
        let from = self.from;
        let mut indexing = Indexing::new();
        indexing.partial_len = partial;
        let input = InterleavedSlice::new(&self.chunk[..], 1, self.chunk.len())
            .map_err(|e| resample_error(from, &e))?;
        let output_len = self.output.len();
        let mut output = InterleavedSlice::new_mut(&mut self.output[..], 1, output_len)
            .map_err(|e| resample_error(from, &e))?;
        let (_, written) = self
            .resampler
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(|e| resample_error(from, &e))?;
        let trimmed = written.min(self.to_trim);
        self.to_trim -= trimmed;
        for &sample in &self.output[trimmed..written] {
            out.push(to_i16(sample));
        }
        self.filled = 0;
        Ok(())
    }
}

fn resample_error(from: u32, e: &dyn std::fmt::Display) -> WavError {
    WavError::Resample {
        from,
        reason: e.to_string(),
    }
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

    /// The whole clip decoded to one wide buffer and resampled at once.
    fn decoded_at_once(bytes: &[u8]) -> Vec<i16> {
        let mut reader = hound::WavReader::new(bytes).unwrap();
        let spec = reader.spec();
        let samples: Vec<f64> = reader
            .samples::<i32>()
            .map(|s| f64::from(s.unwrap()) / 32_768.0)
            .collect();
        let channels = usize::from(spec.channels);
        let mono: Vec<f64> = samples
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f64>() / channels as f64)
            .collect();
        let out = resample(&mono, spec.sample_rate).unwrap();
        out.iter().map(|&s| to_i16(s)).collect()
    }

    #[test]
    fn decoding_a_chunk_at_a_time_gives_the_samples_of_the_whole_clip_at_once() {
        // rubato's whole-clip path moves only part of its first output chunk when it trims the
        // resampler's delay (the rest stays where it was): the samples agree after that chunk.
        const SKIP: usize = 600;
        for (rate, channels, seconds) in [(44_100, 2, 3.0), (16_000, 1, 2.5), (8_000, 1, 1.0)] {
            let bytes = wav(rate, channels, 16, false, seconds, 700.0);
            let streamed = decode(&bytes).unwrap();
            let at_once = decoded_at_once(&bytes);
            let first_difference = streamed
                .iter()
                .zip(&at_once)
                .skip(SKIP)
                .position(|(a, b)| a != b);
            assert!(
                streamed.len() == at_once.len() && first_difference.is_none(),
                "{rate} Hz {channels} ch: {} samples streamed, {} at once, first difference at {first_difference:?}",
                streamed.len(),
                at_once.len()
            );
        }
    }

    /// The header of a 16-bit mono 8 kHz WAV file whose samples would last `seconds`.
    fn header_claiming(seconds: u32) -> Vec<u8> {
        let mut header = wav(RATE, 1, 16, false, 0.0, 0.0);
        assert_eq!(header.len(), 44, "a canonical header");
        let data = seconds * RATE * 2;
        header[4..8].copy_from_slice(&(36 + data).to_le_bytes());
        header[40..44].copy_from_slice(&data.to_le_bytes());
        header
    }

    /// Gives the header, then fails any read past it.
    struct HeaderOnly(Cursor<Vec<u8>>);

    impl Read for HeaderOnly {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 if !buf.is_empty() => Err(std::io::Error::other("read past the header")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn inspecting_reads_the_header_only() {
        let info = inspect(HeaderOnly(Cursor::new(header_claiming(7_200)))).unwrap();
        assert_eq!(
            info,
            WavInfo {
                sample_rate: RATE,
                channels: 1,
                frames: 7_200 * RATE,
                data_bytes: u64::from(7_200 * RATE * 2),
            }
        );
        assert_eq!(info.seconds(), 7_200);
        // Decoding the same reader does read on, and says why it stopped.
        let err =
            decode_from(HeaderOnly(Cursor::new(header_claiming(7_200))), u64::MAX).unwrap_err();
        assert!(matches!(err, WavError::Format(_)), "{err}");
    }

    #[test]
    fn a_header_announcing_more_samples_than_the_file_holds_is_refused_before_allocating() {
        let header = header_claiming(3_600);
        let err = decode_from(HeaderOnly(Cursor::new(header.clone())), 44).unwrap_err();
        assert!(
            err.to_string()
                .contains("announces 57600000 bytes of samples, the file has 44 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_file_longer_than_the_maximum_is_refused_from_its_header() {
        assert!(inspect(HeaderOnly(Cursor::new(header_claiming(MAX_SECONDS)))).is_ok());
        for reader in [
            inspect(HeaderOnly(Cursor::new(header_claiming(MAX_SECONDS + 1)))).map(|_| ()),
            decode_from(
                HeaderOnly(Cursor::new(header_claiming(MAX_SECONDS + 1))),
                u64::MAX,
            )
            .map(|_| ()),
        ] {
            let err = reader.unwrap_err();
            assert!(
                matches!(err, WavError::TooLong { seconds } if seconds == u64::from(MAX_SECONDS) + 1),
                "{err}"
            );
            assert!(err.to_string().contains("longer than the 14400 s"), "{err}");
        }
    }

    /// A G.711 WAV file (format tag 6, A-law, or 7, µ-law) of these 8 kHz mono samples.
    fn g711_wav(tag: u16, samples: &[i16]) -> Vec<u8> {
        use crate::media::g711::{alaw_encode, ulaw_encode};
        let data: Vec<u8> = samples
            .iter()
            .map(|&s| {
                if tag == 6 {
                    alaw_encode(s)
                } else {
                    ulaw_encode(s)
                }
            })
            .collect();
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&tag.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&RATE.to_le_bytes());
        fmt.extend_from_slice(&RATE.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        fmt.extend_from_slice(&0u16.to_le_bytes());
        let mut body = b"WAVEfmt ".to_vec();
        body.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        body.extend_from_slice(&fmt);
        body.extend_from_slice(b"fact");
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(b"data");
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&data);
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend_from_slice(&body);
        file
    }

    #[test]
    fn a_law_and_mu_law_files_are_read() {
        use crate::media::g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
        let tone: Vec<i16> = (0..RATE)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / f64::from(RATE);
                (12_000.0 * phase.sin()) as i16
            })
            .collect();
        for (tag, round_trip) in [
            (6, (|s| alaw_decode(alaw_encode(s))) as fn(i16) -> i16),
            (7, |s| ulaw_decode(ulaw_encode(s))),
        ] {
            let bytes = g711_wav(tag, &tone);
            let samples = decode(&bytes).unwrap();
            let expected: Vec<i16> = tone.iter().map(|&s| round_trip(s)).collect();
            assert_eq!(*samples, *expected, "format tag {tag}");
            assert!(detects(&samples, 1000.0), "format tag {tag}");
            let info = inspect(&bytes[..]).unwrap();
            assert_eq!(
                (info.sample_rate, info.channels, info.frames),
                (RATE, 1, RATE)
            );
        }
    }

    #[test]
    fn a_g711_file_cut_short_or_of_another_encoding_is_refused_naming_why() {
        let mut truncated = g711_wav(7, &[0; 800]);
        truncated.truncate(truncated.len() - 100);
        let err = decode(&truncated).unwrap_err().to_string();
        assert!(err.contains("announces 800 bytes of samples"), "{err}");
        // Whatever length the caller gives, the samples stop where the file does.
        let err = decode_from(&truncated[..], u64::MAX)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ends after 700 of its 800 bytes"), "{err}");

        let mut mp3 = g711_wav(7, &[0; 800]);
        mp3[20..22].copy_from_slice(&0x55u16.to_le_bytes());
        let err = decode(&mp3).unwrap_err();
        assert!(matches!(err, WavError::Unsupported(_)), "{err}");
        assert!(
            err.to_string().contains("MP3 samples (format tag 0x0055)"),
            "{err}"
        );
        let err = inspect(&mp3[..]).unwrap_err().to_string();
        assert!(err.contains("format tag 0x0055"), "{err}");
    }

    #[test]
    fn float_files_with_nan_and_infinities_are_clipped_not_a_panic() {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut out = Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
            for i in 0..4_000 {
                let v = match i % 4 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => f32::MAX,
                    _ => 0.25,
                };
                w.write_sample(v).unwrap();
            }
            w.finalize().unwrap();
        }
        let samples = decode(&out.into_inner()).unwrap();
        assert_eq!(samples.len(), 2_000);
    }

    #[test]
    fn recording_round_trips() {
        let samples: Vec<i16> = (0..800).map(|i| (i * 37 % 2000) as i16 - 1000).collect();
        assert_eq!(*decode(&encode(&samples)).unwrap(), *samples);
    }
}
