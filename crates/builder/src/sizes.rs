//! Special-section entry sizes read from DWARF, and the compiler identity check.
//! (Implementation in progress on a separate branch.)
