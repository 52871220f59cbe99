//! Scenarios: YAML files that say which user agents exist, what each does, how much load to
//! put on the system under test, and what counts as a pass.
//!
//! ```yaml
//! name: pbx-regression
//! target: { server: "${SIP_SERVER:-127.0.0.1:5060}", domain: pbx.test }
//! accounts:
//!   range: { from: 1000, count: 100 }
//!   password: "${SIP_PASSWORD_PREFIX:-pw}{user}"
//! roles:
//!   callee:
//!     accounts: 1000..1049
//!     steps:
//!       - register
//!       - answer: { ring: 500ms }
//!       - play: { tone: 1kHz }
//!       - expect: { tone: 440Hz, within: 2s }
//!       - wait_for: bye
//!   caller:
//!     accounts: 1050..1099
//!     steps:
//!       - register
//!       - call: { to: "sip:{peer}@{domain}", peer: callee }
//!       - play: { tone: 440Hz }
//!       - expect: { tone: 1kHz, within: 2s }
//!       - hangup: { after: 5s }
//! load: { rate: 20/s, ramp_up: 10s, total_calls: 1000 }
//! thresholds:
//!   invite_to_200.p99: < 500ms
//!   calls.failed: < 0.1%
//! ```
//!
//! Loading goes in two steps (file contents and environment are passed in; nothing here reads
//! a file, a variable or a clock):
//!
//! 1. **Structure** ([`raw`]): strict serde structs, unknown keys rejected with a "did you
//!    mean". A YAML syntax error or a structural error stops here, reported alone.
//! 2. **Validation** (`validate`): `${ENV}` substitution, units ([`units`]), references
//!    between roles, accounts, step order, load and thresholds ([`threshold`]); *every*
//!    problem is reported at once, each as `file:line:col` with the source line
//!    ([`ScenarioError`]). The result is a [`Scenario`] ([`model`]).
//!
//! Positions come from a YAML node tree built with the same event parser serde-saphyr uses
//! (`source`): serde-saphyr 0.0.10, the release in use, has no `Spanned<T>` and reports no
//! position for an unknown field (newer releases do; the README's design notes say why the
//! tree stays). Validation names each problem
//! by key path (`roles.caller.steps.2.call.to`) and the tree turns the path into a line and
//! column. `--set key=value` overrides ([`apply_overrides`]) are spliced into the text at
//! those positions, so that the rest of the file keeps its lines.
//!
//! The load section compiles to a pure schedule ([`plan`]).

pub mod accounts;
mod diag;
mod error;
mod load;
pub mod model;
mod overrides;
mod part;
pub mod plan;
pub mod raw;
pub mod shard;
pub(crate) mod source;
pub mod text;
pub mod threshold;
pub mod units;
mod validate;

pub use error::{report, ScenarioError};
pub use load::{load, load_with_overrides, MAX_SCENARIO_BYTES};
pub use model::Scenario;
pub use overrides::{apply_overrides, parse_override, parse_overrides};
pub use plan::LoadPlan;
pub use shard::{Shard, ShardError};
pub use validate::{MAX_TONE_HZ, MIN_TONE_HZ};

#[cfg(test)]
mod tests;
