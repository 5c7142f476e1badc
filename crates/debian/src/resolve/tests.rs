use super::*;
use crate::index::{parse_index, Index};

const BOOKWORM: &str = "\
Package: linux-image-amd64\nSource: linux-signed-amd64 (6.1.176+1)\nVersion: 6.1.176-1\nArchitecture: amd64\n\
Depends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)\n\n\
Package: linux-kbuild-6.1\nSource: linux\nVersion: 6.1.176-1\nArchitecture: amd64\n\n";

const BOOKWORM_SECURITY: &str = "\
Package: linux-image-amd64\nSource: linux-signed-amd64 (6.1.192+3)\nVersion: 6.1.192-3\nArchitecture: amd64\n\
Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\n\n\
Package: linux-image-6.12-amd64\nSource: linux-signed-6.12-amd64\nVersion: 6.12.117-1~deb12u1\nArchitecture: amd64\n\
Depends: linux-image-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1)\n\n\
Package: linux-image-6.1.0-56-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\nArchitecture: amd64\n\
Filename: pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb\n\n\
Package: linux-headers-6.1.0-56-amd64\nSource: linux\nVersion: 6.1.192-2\nArchitecture: amd64\n\
Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86 (>= 6.1.192-2)\n\
Filename: pool/updates/main/l/linux/linux-headers-6.1.0-56-amd64_6.1.192-2_amd64.deb\n\n\
Package: linux-headers-6.1.0-56-common\nSource: linux\nVersion: 6.1.192-2\nArchitecture: all\n\n\
Package: linux-kbuild-6.1\nSource: linux\nVersion: 6.1.192-3\nArchitecture: amd64\n\n\
Package: linux-source-6.1\nSource: linux\nVersion: 6.1.192-2\nArchitecture: all\n\n\
Package: linux-image-6.12.117+deb12-amd64\nSource: linux-signed-6.12-amd64\nVersion: 6.12.117-1~deb12u1\nArchitecture: amd64\n\n\
Package: linux-headers-6.12.117+deb12-amd64\nSource: linux-6.12\nVersion: 6.12.117-1~deb12u1\nArchitecture: amd64\n\
Depends: linux-base (>= 4.12~), linux-headers-6.12.117+deb12-common (= 6.12.117-1~deb12u1), linux-image-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1) | linux-image-6.12.117+deb12-amd64-unsigned (= 6.12.117-1~deb12u1), linux-kbuild-6.12.117+deb12, gcc-12\n\n";

const TRIXIE: &str = "\
Package: linux-image-amd64\nSource: linux-signed-amd64 (6.12.117+1)\nVersion: 6.12.117-1\nArchitecture: amd64\n\
Depends: linux-image-6.12.117+deb13-amd64 (= 6.12.117-1)\n\n";

const TRIXIE_SECURITY: &str = "\
Package: linux-image-cloud-amd64\nSource: linux-signed-amd64 (6.12.118+1)\nVersion: 6.12.118-1\nArchitecture: amd64\n\
Depends: linux-image-6.12.118+deb13-cloud-amd64 (= 6.12.118-1)\n\n\
Package: linux-image-amd64\nSource: linux-signed-amd64 (6.12.118+1)\nVersion: 6.12.118-1\nArchitecture: amd64\n\
Depends: linux-image-6.12.118+deb13-amd64 (= 6.12.118-1)\n\n\
Package: linux-image-6.12.118+deb13-amd64\nVersion: 6.12.118-1\nArchitecture: amd64\n\n\
Package: linux-image-6.12.118+deb13-cloud-amd64\nVersion: 6.12.118-1\nArchitecture: amd64\n\n\
Package: linux-headers-6.12.118+deb13-cloud-amd64\nSource: linux\nVersion: 6.12.118-1\nArchitecture: amd64\n\
Depends: linux-base (>= 4.12~), linux-headers-6.12.118+deb13-common (= 6.12.118-1), linux-image-6.12.118+deb13-cloud-amd64 (= 6.12.118-1) | linux-image-6.12.118+deb13-cloud-amd64-unsigned (= 6.12.118-1), linux-kbuild-6.12.118+deb13, gcc-14\n\n\
Package: linux-headers-6.12.118+deb13-amd64\nSource: linux\nVersion: 6.12.118-1\nArchitecture: amd64\n\
Depends: linux-headers-6.12.118+deb13-common (= 6.12.118-1), linux-kbuild-6.12.118+deb13, gcc-14\n\n\
Package: linux-headers-6.12.118+deb13-common\nSource: linux\nVersion: 6.12.118-1\nArchitecture: all\n\n";

fn index() -> Index {
    let mut e = parse_index(BOOKWORM, "bookworm", "http://m/debian/");
    e.extend(parse_index(
        BOOKWORM_SECURITY,
        "bookworm-security",
        "http://m/debian-security/",
    ));
    e.extend(parse_index(TRIXIE, "trixie", "http://m/debian/"));
    e.extend(parse_index(
        TRIXIE_SECURITY,
        "trixie-security",
        "http://m/debian-security/",
    ));
    Index::from_entries(e)
}

fn resolve_str(s: &str) -> Result<Release> {
    resolve(&index(), &parse_target(s)?)
}

#[test]
fn aliases_pick_the_newest_release_of_their_distribution() {
    // The newest linux-image-amd64 of bookworm's suites (security's, not bookworm's -50);
    // 6.1.0-57's own packages are not in this small index, so the error names the image.
    for t in ["6.1", "bookworm", "6.1-bookworm", "debian12"] {
        let r = resolve_str(t).unwrap_err().to_string();
        assert!(
            r.contains("linux-image-6.1.0-57-amd64 (= 6.1.192-3)"),
            "{t}: {r}"
        );
    }

    let r = resolve_str("6.12").unwrap();
    assert_eq!(r.release, "6.12.117+deb12-amd64");
    assert_eq!(r.codename, "bookworm");
    assert_eq!(r.compiler.as_deref(), Some("gcc-12"));

    for t in ["trixie", "6.12-trixie", "debian13", "trixie-amd64"] {
        let r = resolve_str(t).unwrap();
        assert_eq!(r.release, "6.12.118+deb13-amd64", "{t}");
        assert_eq!((r.codename.as_str(), r.debian), ("trixie", 13));
        assert_eq!(r.suite, "trixie-security");
        assert_eq!(r.compiler.as_deref(), Some("gcc-14"));
    }
    let r = resolve_str("trixie-cloud").unwrap();
    assert_eq!(r.release, "6.12.118+deb13-cloud-amd64");
    assert_eq!(r.flavour, "cloud-amd64");
    assert_eq!(r.series, "6.12");
    let deps: Vec<&str> = r.headers_deps.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        deps,
        [
            "linux-headers-6.12.118+deb13-common",
            "linux-kbuild-6.12.118+deb13"
        ]
    );
    assert!(resolve_str("6.1-trixie").is_err());
    assert!(resolve_str("trixie-rt").is_err());
}

#[test]
fn an_older_point_release_pins_everything_to_its_image() {
    let r = resolve_str("6.1.0-56-amd64").unwrap();
    assert_eq!(r.version, "6.1.192-2");
    assert_eq!(r.codename, "bookworm");
    assert_eq!(r.compiler.as_deref(), Some("gcc-12"));
    // kbuild says `>= 6.1.192-2` and the index lists only -3: still pinned to -2.
    let kbuild = r
        .headers_deps
        .iter()
        .find(|p| p.name == "linux-kbuild-6.1")
        .unwrap();
    assert_eq!(kbuild.version, "6.1.192-2");
    assert_eq!(kbuild.arch.as_deref(), Some("amd64"));
    assert_eq!(r.source.spec(), "linux-source-6.1=6.1.192-2");
    assert_eq!(r.dbg.name, "linux-image-6.1.0-56-amd64-dbg");
    assert_eq!(r.dbg.arch, None);
    // Without the flavour, amd64 is meant.
    assert_eq!(resolve_str("6.1.0-56").unwrap().release, "6.1.0-56-amd64");
}

#[test]
fn bad_targets_are_explained() {
    for t in ["", "foo", "6.1-sparc", "debian11"] {
        let e = parse_target(t).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("hint:"), "{t}: {e}");
    }
    let e = resolve_str("6.1.0-99-amd64").unwrap_err().to_string();
    assert!(e.contains("no package linux-image-6.1.0-99-amd64"), "{e}");
    assert_eq!(
        parse_target("6.12.118+deb13-cloud-amd64").unwrap(),
        Target::Release("6.12.118+deb13-cloud-amd64".into())
    );
    assert_eq!(flavour_of("6.12.118+deb13-rt-amd64"), Some("rt-amd64"));
    assert_eq!(series_of("6.1.0-56-amd64").as_deref(), Some("6.1"));
}
