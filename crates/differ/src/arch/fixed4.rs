//! Helpers shared by the fixed-width (4-byte instruction) architectures.

/// Instruction starts of a fixed-width instruction stream.
pub fn starts(code: &[u8]) -> Vec<u32> {
    (0..code.len() as u32).step_by(4).collect()
}

/// Is the 4-byte word at `at` equal to `word` (as little-endian bytes)?
pub fn word_is(data: &[u8], at: usize, word: u32) -> bool {
    data.get(at..at + 4) == Some(&word.to_le_bytes()[..])
}
