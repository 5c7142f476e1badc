//! Against Debian's real archive (through the host's mirror): resolution of every kind of
//! target, and fetching an older point release's kbuild package that the index no longer
//! lists (the small one: 1.5 MB).

use debian::{Archive, Cache, Options, Verified};

fn archive(dir: &std::path::Path) -> Archive {
    let opts = Options {
        offline: false,
        max_age: std::time::Duration::from_secs(3600),
    };
    Archive::open(&Cache::new(dir), opts).expect("the private apt configuration works")
}

#[test]
fn every_kind_of_target_resolves_against_the_real_archive() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = archive(dir.path());
    let trixie = a.resolve("trixie").unwrap();
    assert!(
        trixie.release.ends_with("+deb13-amd64"),
        "{}",
        trixie.release
    );
    assert_eq!((trixie.codename.as_str(), trixie.debian), ("trixie", 13));
    assert_eq!(trixie.compiler.as_deref(), Some("gcc-14"));
    let cloud = a.resolve("trixie-cloud").unwrap();
    assert_eq!(cloud.version, trixie.version);
    assert!(cloud.release.ends_with("+deb13-cloud-amd64"));
    let rt = a.resolve("6.12-trixie-rt").unwrap();
    assert!(rt.release.ends_with("+deb13-rt-amd64"));
    let d12 = a.resolve("6.1").unwrap();
    assert!(d12.release.starts_with("6.1.0-") && d12.codename == "bookworm");
    let d12_612 = a.resolve("6.12").unwrap();
    assert!(
        d12_612.release.ends_with("+deb12-amd64"),
        "{}",
        d12_612.release
    );
    assert_eq!(d12_612.compiler.as_deref(), Some("gcc-12"));
    let exact = a.resolve(&trixie.release).unwrap();
    assert_eq!(exact, trixie);
    // Every package a trixie build needs is in the index at the pinned version.
    for p in trixie
        .build_packages()
        .iter()
        .chain([&trixie.image, &trixie.dbg])
    {
        assert!(
            a.index().find(&p.name, &p.version).is_some(),
            "{}",
            p.spec()
        );
    }
}

#[test]
fn an_older_point_release_kbuild_comes_from_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = archive(dir.path());
    let current = a.resolve("6.1").unwrap();
    // The ABI before the current one, if the archive still lists its image.
    let abi: u32 = current.release.split('-').nth(1).unwrap().parse().unwrap();
    let older = format!("6.1.0-{}-amd64", abi - 1);
    let Ok(rel) = a.resolve(&older) else {
        panic!("{older} is no longer in the archive: this test needs a release whose kbuild left the index");
    };
    let kbuild = rel
        .headers_deps
        .iter()
        .find(|p| p.name.starts_with("linux-kbuild-"))
        .unwrap()
        .clone();
    assert_eq!(kbuild.version, rel.version);
    let listed = a.index().find(&kbuild.name, &kbuild.version).is_some();
    let f = a.fetch(&kbuild).unwrap();
    assert!(f.path.exists());
    if listed {
        assert_eq!(f.verified, Verified::IndexHash);
    } else {
        assert_eq!(f.verified, Verified::ControlOnly);
        assert!(f
            .warning
            .unwrap()
            .contains("no longer in the archive's signed index"));
    }
    // Second time: from the pool, by its stamp.
    let again = a.fetch(&kbuild).unwrap();
    assert_eq!(again.path, f.path);
    assert!(again.warning.is_none());
    // A corrupted pool file is caught and fetched again.
    std::fs::write(&f.path, b"not a deb").unwrap();
    let fixed = a.fetch(&kbuild).unwrap();
    assert!(std::fs::metadata(&fixed.path).unwrap().len() > 100_000);
}

#[test]
fn a_package_of_an_older_cache_is_reused_after_its_hash_is_checked() {
    use std::os::unix::fs::MetadataExt;
    let first = tempfile::tempdir().unwrap();
    let mut a = archive(first.path());
    let rel = a.resolve("trixie").unwrap();
    let kbuild = rel
        .headers_deps
        .iter()
        .find(|p| p.name.starts_with("linux-kbuild-"))
        .unwrap()
        .clone();
    let fetched = a.fetch(&kbuild).unwrap();
    // An earlier version's layout: <cache>/<release>/debs/<file>.
    let second = tempfile::tempdir_in(first.path()).unwrap();
    let old = second.path().join(&rel.release).join("debs");
    std::fs::create_dir_all(&old).unwrap();
    let name = fetched.path.file_name().unwrap();
    std::fs::hard_link(&fetched.path, old.join(name)).unwrap();
    let b = archive(second.path());
    let again = b.fetch(&kbuild).unwrap();
    assert_eq!(again.verified, Verified::IndexHash);
    let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&again.path),
        ino(&old.join(name)),
        "not reused from the old cache"
    );
    // A corrupted old file is not taken: it is fetched anew.
    let third = tempfile::tempdir_in(first.path()).unwrap();
    let old3 = third.path().join(&rel.release).join("debs");
    std::fs::create_dir_all(&old3).unwrap();
    std::fs::write(old3.join(name), b"garbage").unwrap();
    let c = archive(third.path());
    let fresh = c.fetch(&kbuild).unwrap();
    assert_ne!(ino(&fresh.path), ino(&old3.join(name)));
    assert_eq!(
        std::fs::read(&fresh.path).unwrap(),
        std::fs::read(&fetched.path).unwrap()
    );
}
