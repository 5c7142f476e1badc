//! `kelf::read::parse` on arbitrary bytes; whatever parses must serialise, and what is
//! written must parse again to the same tables.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let obj = match kelf::read::parse(data) {
        Ok(o) => o,
        // Executables and shared objects: the parent-symbol-table path reads those.
        Err(kelf::Error::Unsupported(_)) => {
            let _ = kelf::read::parse_any(data);
            return;
        }
        Err(_) => return,
    };
    // The same bytes at an odd address parse the same.
    let mut shifted = vec![0u8; data.len() + 1];
    shifted[1..].copy_from_slice(data);
    match kelf::read::parse(&shifted[1..]) {
        Ok(o) => assert_eq!(o.symbols, obj.symbols, "misaligned parse"),
        Err(e) => panic!("misaligned copy does not parse: {e}"),
    }
    let Ok(bytes) = kelf::write::to_bytes(&obj) else {
        return;
    };
    let again = match kelf::read::parse(&bytes) {
        Ok(o) => o,
        Err(e) => panic!("written object does not parse: {e}"),
    };
    assert_eq!(again.header.e_machine, obj.header.e_machine);
    assert_eq!(again.symbols.len(), obj.symbols.len(), "symbol count");
    for (a, b) in obj.symbols.iter().zip(&again.symbols) {
        assert_eq!(
            (a.bind, a.kind, a.value, a.size),
            (b.bind, b.kind, b.value, b.size)
        );
    }
    let relas = |o: &kelf::Object| o.sections.iter().map(|s| s.relas.len()).sum::<usize>();
    assert_eq!(relas(&obj), relas(&again), "relocation count");
});
