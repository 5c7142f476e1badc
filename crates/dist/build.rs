fn main() {
    testgate::emit_build_cfg();
}
