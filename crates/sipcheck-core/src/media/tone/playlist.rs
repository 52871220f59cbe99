//! Playlists: tones, silences and recorded audio one after the other, once or looping.

use super::*;

/// One item of a [`Playlist`].
#[derive(Debug, Clone)]
pub enum PlaylistItem {
    /// A tone for a duration (rounded to whole samples).
    Tone {
        /// The tone to play.
        tone: Tone,
        /// How long to play it.
        duration: Duration,
    },
    /// Digital silence for a duration (rounded to whole samples).
    Silence {
        /// How long to stay silent.
        duration: Duration,
    },
    /// Caller-supplied 8 kHz mono samples (for example read from a WAV file), played once.
    /// An `Arc` so that many calls can share one recording.
    Pcm(Arc<[i16]>),
}

impl PlaylistItem {
    fn samples(&self) -> u64 {
        match self {
            Self::Tone { duration, .. } | Self::Silence { duration } => {
                duration_to_samples(*duration)
            }
            Self::Pcm(samples) => samples.len() as u64,
        }
    }
}

/// Items played in order, frame by frame; silence once the list is over (unless looping).
#[derive(Debug, Clone)]
pub struct Playlist {
    items: Vec<PlaylistItem>,
    lengths: Vec<u64>,
    looping: bool,
    index: usize,
    offset: u64,
    /// One generator per tone item, made when the item is first played and restarted each
    /// time it is played again.
    generators: Vec<Option<ToneGenerator>>,
    position: u64,
}

impl Playlist {
    /// A playlist that plays `items` once, then silence.
    #[must_use]
    pub fn new(items: Vec<PlaylistItem>) -> Self {
        let lengths = items.iter().map(PlaylistItem::samples).collect();
        let generators = vec![None; items.len()];
        let mut playlist = Self {
            items,
            lengths,
            looping: false,
            index: 0,
            offset: 0,
            generators,
            position: 0,
        };
        playlist.enter_item();
        playlist
    }

    /// A playlist that plays `items` over and over. An empty (zero-length) list plays
    /// silence.
    #[must_use]
    pub fn looping(items: Vec<PlaylistItem>) -> Self {
        let mut playlist = Self::new(items);
        playlist.looping = true;
        playlist
    }

    /// The number of samples in one pass over the items.
    #[must_use]
    pub fn total_samples(&self) -> u64 {
        self.lengths.iter().sum()
    }

    /// Whether the items play over and over.
    #[must_use]
    pub fn is_looping(&self) -> bool {
        self.looping
    }

    /// How many samples have been produced so far (including trailing silence).
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The sample offset at which item `index` starts in the first pass, if it exists: the
    /// expected onset to compare a detection with.
    #[must_use]
    pub fn item_start(&self, index: usize) -> Option<u64> {
        (index < self.items.len()).then(|| self.lengths[..index].iter().sum())
    }

    /// Whether every item has been played (never true for a non-empty looping playlist).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.index >= self.items.len()
    }

    /// Skips zero-length items and prepares the generator of the current item.
    fn enter_item(&mut self) {
        loop {
            if self.index >= self.items.len() {
                if self.looping && self.total_samples() > 0 {
                    self.index = 0;
                } else {
                    return;
                }
            }
            if self.lengths[self.index] > 0 {
                break;
            }
            self.index += 1;
        }
        self.offset = 0;
        if let PlaylistItem::Tone { tone, .. } = &self.items[self.index] {
            match &mut self.generators[self.index] {
                Some(generator) => generator.restart(),
                slot @ None => *slot = Some(ToneGenerator::new(tone)),
            }
        }
    }

    /// Fills `out`; returns how many of its samples came from items (the rest is trailing
    /// silence after the list is over).
    pub fn fill_counted(&mut self, out: &mut [i16]) -> usize {
        let mut done = 0;
        while done < out.len() && !self.is_finished() {
            let left_in_item = self.lengths[self.index] - self.offset;
            let n = usize::try_from(left_in_item)
                .unwrap_or(usize::MAX)
                .min(out.len() - done);
            let chunk = &mut out[done..done + n];
            match &self.items[self.index] {
                PlaylistItem::Tone { .. } => {
                    if let Some(generator) = &mut self.generators[self.index] {
                        generator.fill(chunk);
                    }
                }
                PlaylistItem::Silence { .. } => chunk.fill(0),
                PlaylistItem::Pcm(samples) => {
                    // `offset + n <= len` by construction.
                    let start = usize::try_from(self.offset).unwrap_or(usize::MAX);
                    chunk.copy_from_slice(&samples[start..start + n]);
                }
            }
            done += n;
            self.offset += n as u64;
            if self.offset == self.lengths[self.index] {
                self.index += 1;
                self.enter_item();
            }
        }
        if done < out.len() {
            out[done..].fill(0);
        }
        self.position += out.len() as u64;
        done
    }
}

impl AudioSource for Playlist {
    fn fill(&mut self, out: &mut [i16]) {
        self.fill_counted(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tone::tests::*;

    #[test]
    fn playlist_plays_items_in_order_frame_by_frame() {
        let pcm: Arc<[i16]> = Arc::from(vec![1000i16, -1000, 2000]);
        let mut playlist = Playlist::new(vec![
            tone(1000.0, -6.0, ms(25)),
            silence(ms(10)),
            PlaylistItem::Pcm(pcm),
            silence(Duration::ZERO),
            tone(500.0, -6.0, ms(5)),
        ]);
        assert_eq!(playlist.total_samples(), 200 + 80 + 3 + 40);
        assert_eq!(playlist.item_start(2), Some(280));
        assert_eq!(playlist.item_start(4), Some(283));
        assert_eq!(playlist.item_start(5), None);
        let mut out = Vec::new();
        let mut produced = 0;
        while out.len() < 480 {
            let mut frame = [0i16; 160];
            produced += playlist.fill_counted(&mut frame);
            out.extend_from_slice(&frame);
        }
        assert_eq!(produced, 323);
        assert!(playlist.is_finished());
        assert_eq!(playlist.position(), 480);
        // The first tone crosses a frame boundary without a phase jump.
        let mut reference = vec![0; 200];
        ToneGenerator::new(&Tone::single(1000.0, -6.0).unwrap()).fill(&mut reference);
        assert_eq!(&out[..200], &reference[..]);
        assert!(out[200..280].iter().all(|&s| s == 0));
        assert_eq!(&out[280..283], &[1000, -1000, 2000]);
        let mut second = vec![0; 40];
        ToneGenerator::new(&Tone::single(500.0, -6.0).unwrap()).fill(&mut second);
        assert_eq!(&out[283..323], &second[..]);
        assert!(out[323..].iter().all(|&s| s == 0));
    }

    #[test]
    fn a_looping_playlist_restarts_its_tones_at_phase_zero() {
        let items = vec![
            tone(1000.0, -6.0, ms(25)),
            tone(440.5, -6.0, ms(13)),
            silence(ms(5)),
        ];
        let once = render(items.clone());
        let mut playlist = Playlist::looping(items);
        let mut out = vec![0; once.len() * 3];
        for frame in out.chunks_mut(160) {
            assert_eq!(playlist.fill_counted(frame), frame.len());
        }
        for pass in out.chunks(once.len()) {
            assert_eq!(pass, &once[..]);
        }
    }

    #[test]
    fn looping_playlist_repeats_and_empty_one_is_silent() {
        let pcm: Arc<[i16]> = Arc::from(vec![1i16, 2, 3]);
        let mut playlist = Playlist::looping(vec![PlaylistItem::Pcm(pcm)]);
        let mut out = [0i16; 8];
        assert_eq!(playlist.fill_counted(&mut out), 8);
        assert_eq!(out, [1, 2, 3, 1, 2, 3, 1, 2]);
        assert!(!playlist.is_finished());
        let mut empty = Playlist::looping(vec![silence(Duration::ZERO)]);
        assert_eq!(empty.fill_counted(&mut out), 0);
        assert_eq!(out, [0; 8]);
        assert!(empty.is_finished());
    }
}
