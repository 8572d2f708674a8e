//! Times on the command line: RFC 3339, `now`, or a duration from now (`7d`, `12h`); kiln-plan owns them.

pub use kiln_plan::time::{format_time, parse_time};
