//! Sets `cfg(testbed_skip)` for the real-kernel tests (see the `testgate` crate).
fn main() {
    testgate::emit_build_cfg();
}
