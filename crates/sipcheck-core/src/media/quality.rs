//! Listening quality, estimated: the loss pattern of what was played out and the ITU-T G.107
//! E-model turning it into a rating R and an estimated MOS (MOS-CQE).
//!
//! The E-model is a planning model: it predicts what an average listener would say of a
//! connection from its parameters. sipcheck feeds it what it measured of one direction of a
//! call and keeps every other parameter at its G.107 default (§7.7, Table 3):
//!
//! ```text
//! R       = R0 − Idd − Ie,eff                     (G.107 eq. 7-1; Ro − Is − Id at the defaults = 93.2)
//! Ie,eff  = Ie + (95 − Ie) · Ppl / (Ppl/BurstR + Bpl)                      (G.107 eq. 7-29)
//! BurstR  = 1 / (p + q)         p = P(lost | previous received), q = P(received | previous lost)
//! Idd     = 25·((1+X⁶)^⅙ − 3(1+(X/3)⁶)^⅙ + 2),  X = log2(Ta/100 ms),  only for Ta > 100 ms
//! MOS     = 1 + 0.035R + R(R − 60)(100 − R)·7·10⁻⁶   for 0 < R < 100   (G.107 Annex B)
//! ```
//!
//! G.711 (both laws) has `Ie = 0`; its packet-loss robustness `Bpl` is 4.3 without packet
//! loss concealment and 25.1 with the concealment of G.711 Appendix I (G.113 Appendix I,
//! Table I.3). sipcheck conceals a lost frame with silence, so it rates what it hears with
//! `Bpl = 4.3` ([`Bpl::G711_NO_PLC`]): the estimate is that of a listener without
//! concealment, lower than what a phone with PLC would give for the same loss.
//!
//! `Ppl` is the share of frames due for playout that were missing: lost in the network *or*
//! arrived too late for the jitter buffer (both are silence to the listener). The loss pattern
//! is the sequence of playout ticks of the played stream ([`LossPattern`]); for random loss
//! BurstR is 1, for losses in bursts it grows. The one-way delay `Ta` is not measured (no
//! RTCP round trip): it is taken as 0 (no delay impairment) unless given.

use std::time::Duration;

/// G.107's R at its default parameters with no loss and no delay: Ro − Is − Id
/// (94.77 − 1.43 − 0.15), Table 3 note: "R = 93.2".
pub const R_DEFAULT: f64 = 93.2;

/// The packet-loss robustness factor of a codec (G.113 Appendix I).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bpl(pub f64);

impl Bpl {
    /// G.711 without packet loss concealment (a lost frame is silence): 4.3.
    pub const G711_NO_PLC: Bpl = Bpl(4.3);
    /// G.711 with the packet loss concealment of its Appendix I: 25.1.
    pub const G711_PLC: Bpl = Bpl(25.1);
}

/// The sequence of frames due for playout, as a two-state (Gilbert) model: how many were
/// received or lost, and how often the state changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossPattern {
    /// Frames played (received in time).
    pub received: u64,
    /// Frames missing at their playout tick (lost, or too late).
    pub lost: u64,
    /// Transitions received → lost.
    pub to_lost: u64,
    /// Transitions lost → received.
    pub to_received: u64,
    /// Whether the last frame was lost (`None` before the first).
    last_lost: Option<bool>,
}

impl LossPattern {
    /// Notes one playout tick: the frame was there (`false`) or missing (`true`).
    pub fn record(&mut self, lost: bool) {
        match (self.last_lost, lost) {
            (Some(false), true) => self.to_lost += 1,
            (Some(true), false) => self.to_received += 1,
            _ => {}
        }
        if lost {
            self.lost += 1;
        } else {
            self.received += 1;
        }
        self.last_lost = Some(lost);
    }

    /// Notes `n` missing frames in a row.
    pub fn record_lost(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        if self.last_lost == Some(false) {
            self.to_lost += 1;
        }
        self.lost += n;
        self.last_lost = Some(true);
    }

    /// Frames due in all.
    #[must_use]
    pub fn frames(&self) -> u64 {
        self.received + self.lost
    }

    /// The packet-loss probability Ppl, in percent (0 without frames).
    #[must_use]
    pub fn ppl_percent(&self) -> f64 {
        if self.frames() == 0 {
            return 0.0;
        }
        100.0 * self.lost as f64 / self.frames() as f64
    }

    /// The burst ratio BurstR = 1/(p + q) (G.107 §7.5, eq. 7-30), from the observed
    /// transitions: p = received→lost per received frame followed by another, q = lost→received
    /// per lost frame followed by another. 1 without loss (random loss gives about 1).
    #[must_use]
    pub fn burst_ratio(&self) -> f64 {
        if self.lost == 0 || self.received == 0 {
            return 1.0;
        }
        // Frames that had a successor in each state: the last frame has none.
        let last_lost = self.last_lost == Some(true);
        let received_before = self.received - u64::from(!last_lost);
        let lost_before = self.lost - u64::from(last_lost);
        let p = if received_before == 0 {
            0.0
        } else {
            self.to_lost as f64 / received_before as f64
        };
        let q = if lost_before == 0 {
            // Lost frames only at the very end: nothing says how long the burst would last;
            // take it as random.
            1.0 - p
        } else {
            self.to_received as f64 / lost_before as f64
        };
        if p + q <= 0.0 {
            1.0
        } else {
            1.0 / (p + q)
        }
    }
}

/// The effective equipment impairment Ie,eff (G.107 eq. 7-29) of a codec with `ie` and `bpl`.
#[must_use]
pub fn ie_eff(ie: f64, bpl: Bpl, ppl_percent: f64, burst_r: f64) -> f64 {
    let burst_r = if burst_r > 0.0 { burst_r } else { 1.0 };
    ie + (95.0 - ie) * ppl_percent / (ppl_percent / burst_r + bpl.0)
}

/// The delay impairment Idd (G.107 eq. 7-28) of an absolute one-way delay `ta`.
#[must_use]
pub fn idd(ta: Duration) -> f64 {
    let ms = ta.as_secs_f64() * 1000.0;
    if ms <= 100.0 {
        return 0.0;
    }
    let x = (ms / 100.0).log2();
    25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
        + 2.0)
}

/// MOS-CQE from R (G.107 Annex B, eq. B-4).
#[must_use]
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// The E-model's estimate for one direction of a G.711 call.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct QualityEstimate {
    /// Ppl, percent.
    pub ppl_percent: f64,
    /// BurstR.
    pub burst_r: f64,
    /// The rating R.
    pub r: f64,
    /// The estimated MOS (MOS-CQE, 1..4.5).
    pub mos_cqe: f64,
}

impl QualityEstimate {
    /// The same estimate made with a one-way delay `ta` (for an estimate made without one).
    #[must_use]
    pub fn with_delay(self, ta: Duration) -> Self {
        let r = self.r - idd(ta);
        Self {
            r,
            mos_cqe: mos_from_r(r),
            ..self
        }
    }
}

/// Rates `pattern` for G.711 (Ie = 0) with `bpl`, and a one-way delay `ta` when known.
#[must_use]
pub fn estimate(pattern: &LossPattern, bpl: Bpl, ta: Option<Duration>) -> QualityEstimate {
    let ppl = pattern.ppl_percent();
    let burst_r = pattern.burst_ratio();
    let r = R_DEFAULT - ta.map_or(0.0, idd) - ie_eff(0.0, bpl, ppl, burst_r);
    QualityEstimate {
        ppl_percent: ppl,
        burst_r,
        r,
        mos_cqe: mos_from_r(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// A pattern of `n` frames where frame `i` is lost when `lost(i)`.
    fn pattern(n: u64, lost: impl Fn(u64) -> bool) -> LossPattern {
        let mut p = LossPattern::default();
        for i in 0..n {
            p.record(lost(i));
        }
        p
    }

    #[test]
    fn default_parameters_give_r_93_2_and_mos_4_41() {
        // G.107 §7.7, Table 3 note: all parameters at their defaults give R = 93.2; Annex B,
        // Figure B.1: R = 93.2 is MOS-CQE 4.41 (the best narrowband rating, G.711 at Ppl = 0).
        let e = estimate(&LossPattern::default(), Bpl::G711_NO_PLC, None);
        assert!(close(e.r, 93.2, 1e-9), "{e:?}");
        assert!(close(e.mos_cqe, 4.41, 0.005), "{e:?}");
        let clean = pattern(1000, |_| false);
        assert_eq!(estimate(&clean, Bpl::G711_PLC, None), e);
    }

    #[test]
    fn annex_b_mapping_reference_points() {
        // G.107 Annex B, Table B.1 (user satisfaction bands): R = 90 → 4.34, R = 80 → 4.03,
        // R = 70 → 3.60, R = 60 → 3.10, R = 50 → 2.58 (the table rounds; eq. B-4 gives 4.339,
        // 4.024, 3.597, 3.1, 2.575); and the ends: R ≤ 0 → 1, R ≥ 100 → 4.5.
        for (r, mos) in [
            (90.0, 4.34),
            (80.0, 4.03),
            (70.0, 3.60),
            (60.0, 3.10),
            (50.0, 2.58),
        ] {
            assert!(close(mos_from_r(r), mos, 0.01), "R {r}: {}", mos_from_r(r));
        }
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
    }

    #[test]
    fn random_loss_of_ten_percent_is_far_from_toll_quality() {
        // Every tenth frame lost: Ppl = 10 %, p = 1/9 and q = 1, BurstR = 0.9 (a pattern more
        // regular than random). Ie,eff = 95·10/(10/0.9 + 4.3) = 61.6 → R = 31.6, MOS 1.67.
        let p = pattern(10_000, |i| i % 10 == 9);
        assert!(close(p.ppl_percent(), 10.0, 1e-9));
        assert!(close(p.burst_ratio(), 0.9, 1e-3), "{}", p.burst_ratio());
        let e = estimate(&p, Bpl::G711_NO_PLC, None);
        assert!(close(e.r, 31.6, 0.1), "{e:?}");
        assert!(e.mos_cqe < 2.0, "{e:?}");
        // With BurstR = 1 (random loss), G.711 without PLC: Ie,eff = 950/14.3 = 66.4,
        // R = 26.8, MOS 1.48; with PLC (Bpl 25.1): Ie,eff = 950/35.1 = 27.1, R = 66.1,
        // MOS 3.41. Never 4.5.
        let no_plc = 93.2 - ie_eff(0.0, Bpl::G711_NO_PLC, 10.0, 1.0);
        assert!(close(no_plc, 26.8, 0.05), "{no_plc}");
        assert!(
            close(mos_from_r(no_plc), 1.48, 0.01),
            "{}",
            mos_from_r(no_plc)
        );
        let plc = 93.2 - ie_eff(0.0, Bpl::G711_PLC, 10.0, 1.0);
        assert!(close(plc, 66.13, 0.05), "{plc}");
        assert!(close(mos_from_r(plc), 3.41, 0.01), "{}", mos_from_r(plc));
    }

    #[test]
    fn one_percent_random_loss_matches_g113_ie_eff() {
        // G.113 Appendix I: G.711 with PLC (Bpl 25.1) at Ppl 1 %, random: Ie,eff = 95/26.1 =
        // 3.64; without PLC (Bpl 4.3): 95/5.3 = 17.9.
        assert!(close(ie_eff(0.0, Bpl::G711_PLC, 1.0, 1.0), 3.64, 0.01));
        assert!(close(ie_eff(0.0, Bpl::G711_NO_PLC, 1.0, 1.0), 17.92, 0.01));
    }

    #[test]
    fn bursts_are_rated_worse_than_random_loss_of_the_same_rate() {
        // 5 % loss in bursts of 5 frames (one burst every 100 frames): p = 100/9500 and
        // q = 99/499 (the last burst has no end), BurstR = 1/(p + q) = 4.79.
        let bursty = pattern(10_000, |i| i % 100 >= 95);
        assert!(close(bursty.ppl_percent(), 5.0, 1e-9));
        assert!(
            close(bursty.burst_ratio(), 4.79, 0.01),
            "{}",
            bursty.burst_ratio()
        );
        let spread = pattern(10_000, |i| i % 20 == 19);
        let (b, s) = (
            estimate(&bursty, Bpl::G711_PLC, None),
            estimate(&spread, Bpl::G711_PLC, None),
        );
        assert!(b.r < s.r, "bursty {b:?} spread {s:?}");
    }

    #[test]
    fn loss_only_at_the_end_counts_as_random() {
        let p = pattern(100, |i| i >= 98);
        assert!(close(p.ppl_percent(), 2.0, 1e-9));
        assert!(p.burst_ratio().is_finite() && p.burst_ratio() > 0.0);
    }

    #[test]
    fn delay_impairs_only_above_100_ms() {
        // G.107 eq. 7-28: Idd = 0 up to Ta = 100 ms; at 200 ms X = 1, Idd = 25·(2^⅙ −
        // 3·(1 + 1/729)^⅙ + 2) = 3.04; at 400 ms (X = 2) 24.1.
        assert_eq!(idd(Duration::from_millis(80)), 0.0);
        assert!(
            close(idd(Duration::from_millis(200)), 3.04, 0.01),
            "{}",
            idd(Duration::from_millis(200))
        );
        assert!(
            close(idd(Duration::from_millis(400)), 24.07, 0.01),
            "{}",
            idd(Duration::from_millis(400))
        );
        let e = estimate(
            &LossPattern::default(),
            Bpl::G711_NO_PLC,
            Some(Duration::from_millis(400)),
        );
        assert!(e.mos_cqe < 4.0, "{e:?}");
    }
}
