//! Helpers shared by the fixed-width (4-byte instruction) architectures.

/// Instruction starts of a fixed-width instruction stream.
pub fn starts(code: &[u8]) -> Vec<u32> {
    (0..code.len() as u32).step_by(4).collect()
}

/// Length of the instruction at the start of `code`: 4, or 0 if fewer bytes remain.
pub fn len(code: &[u8]) -> usize {
    if code.len() >= 4 {
        4
    } else {
        0
    }
}

/// Is the 4-byte word at `at` equal to `word` (as little-endian bytes)?
pub fn word_is(data: &[u8], at: usize, word: u32) -> bool {
    data.get(at..at + 4) == Some(&word.to_le_bytes()[..])
}
