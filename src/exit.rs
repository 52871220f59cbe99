//! Exit codes: documented API, listed in the README.

use std::process::ExitCode;

use sipcheck_core::stats::verdict::Verdict;

/// How a sipcheck command ended, as seen by a shell or CI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: everything asked for happened and every expectation held.
    Success,
    /// 1: the system under test failed: a SIP error response (403, 404, 486 …), a timeout
    /// (Timer B/F), a credential rejection, or a failed expectation.
    Failure,
    /// 2: usage or configuration error: bad flags, an unparsable URI, an unresolvable host, a
    /// local port in use, an unreadable file. Nothing was sent, or nothing meaningful.
    Usage,
    /// 3: an internal or unexpected I/O error in sipcheck itself.
    Internal,
    /// 99: the run finished but a threshold failed (thresholds decide when present).
    Thresholds,
    /// 130: the run was interrupted (Ctrl-C); calls were hung up and reports written.
    Interrupted,
    /// 131: `run` was interrupted twice: it left at once, without hanging up, unregistering
    /// or writing its reports (nothing it wrote before is a complete report).
    Abandoned,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Internal => 3,
            Exit::Thresholds => 99,
            Exit::Interrupted => 130,
            Exit::Abandoned => 131,
        }
    }
}

impl From<Verdict> for Exit {
    /// A passed verdict is 0, a failed one 1, failed thresholds 99, an interrupted run 130.
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Passed => Exit::Success,
            Verdict::Failed => Exit::Failure,
            Verdict::ThresholdsFailed => Exit::Thresholds,
            Verdict::Interrupted => Exit::Interrupted,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_keep_their_exit_codes() {
        let code = |v: Verdict| Exit::from(v).code();
        assert_eq!(code(Verdict::Passed), 0);
        assert_eq!(code(Verdict::Failed), 1);
        assert_eq!(code(Verdict::ThresholdsFailed), 99);
        assert_eq!(code(Verdict::Interrupted), 130);
    }
}
