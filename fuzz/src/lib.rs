//! Helpers shared by the fuzz targets: second, deliberately plain
//! implementations of what `tally-token` does fast, to compare against.

pub mod bundle_text;
pub mod prefix;
pub mod reference;
