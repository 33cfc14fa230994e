use super::*;

#[test]
fn split_components_drops_dot_and_rejects_escapes() {
    let names = split_components(Path::new("./etc//ssh/./sshd_config")).unwrap();
    assert_eq!(names, [OsStr::new("etc"), OsStr::new("ssh"), OsStr::new("sshd_config")]);
    assert!(split_components(Path::new("")).unwrap().is_empty());
    assert!(split_components(Path::new(".")).unwrap().is_empty());
    assert_eq!(split_components(Path::new("/etc")), Err(Errno::XDEV));
    assert_eq!(split_components(Path::new("etc/../x")), Err(Errno::XDEV));
    assert_eq!(split_components(Path::new("..")), Err(Errno::XDEV));
}

#[test]
fn action_table() {
    use Action::*;
    use Kind::*;
    assert_eq!(action(File, Verdict::Copy, 1), Leaf);
    assert_eq!(action(Symlink, Verdict::Copy, 64), Leaf);
    assert_eq!(action(Dir, Verdict::Copy, 1), EnterCopy);
    assert_eq!(action(Dir, Verdict::Copy, 63), EnterCopy);
    assert_eq!(action(Dir, Verdict::Copy, 64), TooDeep);
    assert_eq!(action(Dir, Verdict::Descend, 64), TooDeep);
    assert_eq!(action(Dir, Verdict::Refuse, 64), Refuse);
    assert_eq!(action(Dir, Verdict::Descend, 2), EnterDescend);
    assert_eq!(action(File, Verdict::Descend, 2), Refuse);
    assert_eq!(action(Socket, Verdict::Copy, 1), Refuse);
    assert_eq!(action(Device, Verdict::Refuse, 1), Refuse);
    assert_eq!(action(Fifo, Verdict::Copy, 1), Leaf);
}

#[test]
fn kind_of_mode() {
    assert_eq!(Kind::of_mode(0o100644), Some(Kind::File));
    assert_eq!(Kind::of_mode(0o040755), Some(Kind::Dir));
    assert_eq!(Kind::of_mode(0o120777), Some(Kind::Symlink));
    assert_eq!(Kind::of_mode(0o020666), Some(Kind::Device));
    assert_eq!(Kind::of_mode(0o060660), Some(Kind::Device));
    assert_eq!(Kind::of_mode(0o010644), Some(Kind::Fifo));
    assert_eq!(Kind::of_mode(0o140755), Some(Kind::Socket));
    assert_eq!(Kind::of_mode(0o000644), None);
}

#[test]
fn error_display_is_lower_case() {
    let err = TreeError::new(Path::new("etc/fstab"), TreeOp::ReplaceDir, Errno::ISDIR);
    assert_eq!(err.to_string(), "replace-dir etc/fstab: is a directory (os error 21)");
}

#[test]
fn serialization_of_entries_and_errors() {
    let entry = Entry { path: PathBuf::from("etc/fstab"), kind: Kind::Symlink };
    let json = serde_json::to_string(&entry).unwrap();
    assert_eq!(json, r#"{"path":"etc/fstab","kind":"symlink"}"#);
    let err = TreeError::new(Path::new("x"), TreeOp::Depth, Errno::LOOP);
    let json = serde_json::to_string(&err).unwrap();
    assert_eq!(json, r#"{"path":"x","op":"depth","errno":"too many levels of symbolic links (os error 40)"}"#);
}

#[test]
fn non_utf8_paths_serialize_lossily() {
    let path = PathBuf::from(OsStr::from_bytes(b"etc/\xffname"));
    let entry = Entry { path, kind: Kind::File };
    let json = serde_json::to_string(&entry).unwrap();
    assert_eq!(json, "{\"path\":\"etc/\u{fffd}name\",\"kind\":\"file\"}");
}

#[test]
fn only_a_regular_file_is_opened_for_reading() {
    let base = std::env::temp_dir().join(format!("stateless-tree-regular-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("f"), b"x").unwrap();
    let node = |path: &Path| fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
    assert!(open_regular(&node(&base.join("f"))).is_ok());
    assert_eq!(open_regular(&node(Path::new("/dev/null"))).err(), Some(Errno::INVAL), "a device is never opened");
    assert_eq!(open_regular(&node(&base)).err(), Some(Errno::INVAL));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn xattr_names_split_on_nul() {
    let names: Vec<&[u8]> = xattr_names(b"user.a\0trusted.b\0").collect();
    assert_eq!(names, [&b"user.a"[..], &b"trusted.b"[..]]);
    assert_eq!(xattr_names(b"").count(), 0);
}

#[test]
fn read_sized_retries_when_value_grows() {
    use std::cell::Cell;
    let calls = Cell::new(0);
    let got = read_sized(
        || Ok(2 + calls.get()),
        |buf| {
            calls.set(calls.get() + 1);
            if buf.len() < 3 {
                return Err(Errno::RANGE);
            }
            buf[..3].copy_from_slice(b"abc");
            Ok(3)
        },
    );
    assert_eq!(got.unwrap(), b"abc");
    assert_eq!(read_sized(|| Ok(0), |_| Err(Errno::IO)).unwrap(), b"");
    assert_eq!(read_sized(|| Ok(1), |_| Err(Errno::RANGE)), Err(Errno::RANGE));
}

#[test]
fn create_mode_only_with_create() {
    assert_eq!(create_mode(OFlags::RDONLY), Mode::empty());
    assert_eq!(create_mode(OFlags::WRONLY | OFlags::CREATE), Mode::from_raw_mode(0o600));
    assert_eq!(create_mode(OFlags::DIRECTORY | OFlags::CLOEXEC), Mode::empty(), "O_DIRECTORY is part of O_TMPFILE");
    assert_eq!(create_mode(OFlags::TMPFILE | OFlags::RDWR), Mode::from_raw_mode(0o600));
}

#[test]
fn component_walk_never_follows_symlinks() {
    let base = std::env::temp_dir().join(format!("stateless-tree-unit-{}", std::process::id()));
    std::fs::create_dir_all(base.join("a/b")).unwrap();
    std::fs::write(base.join("a/b/f"), b"x").unwrap();
    std::os::unix::fs::symlink("b", base.join("a/l")).unwrap();
    let dir = fs::open(&base, DIR_FLAGS, Mode::empty()).unwrap();
    let rd = OFlags::RDONLY;
    assert!(open_components(dir.as_fd(), Path::new("a/b/f"), rd).is_ok());
    assert!(open_components(dir.as_fd(), Path::new("./a/./b/f"), rd).is_ok());
    let via_link = open_components(dir.as_fd(), Path::new("a/l/f"), rd);
    assert!(matches!(via_link, Err(Errno::LOOP | Errno::NOTDIR)));
    assert_eq!(open_components(dir.as_fd(), Path::new("a/l"), rd).err(), Some(Errno::LOOP));
    assert_eq!(open_components(dir.as_fd(), Path::new("a/../a"), rd).err(), Some(Errno::XDEV));
    assert!(open_components(dir.as_fd(), Path::new(""), DIR_FLAGS).is_ok());
    std::fs::remove_dir_all(&base).unwrap();
}
