//! Helpers shared by the fuzz targets: second, deliberately plain
//! implementations of what `tally-token` does fast, to compare against, and
//! the input language of `check_path`.

pub mod bundle_text;
pub mod check_input;
pub mod prefix;
pub mod reference;
