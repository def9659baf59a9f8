//! A deterministic tar writer: the same tree gives the same bytes on every host.
//!
//! Entries are written in path order, parents first; every entry has the same modification time
//! (the build's `SOURCE_DATE_EPOCH`), owner `0:0` unless a directory is given to the image user,
//! empty user and group names and a fixed mode. Nothing is read from the file system here: the
//! caller hands over contents, so no host metadata (inode times, owners, umask) can leak in.

use std::collections::BTreeMap;

use crate::Error;

/// One node of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A regular file.
    File {
        /// Its contents.
        contents: Vec<u8>,
        /// Permission bits (`0o644`, `0o755`).
        mode: u32,
    },
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner and group (`0:0` but for a directory given to the image's user).
        owner: (u32, u32),
    },
}

/// A file tree to be written as one layer. Paths are absolute-looking (`/etc/passwd`) or
/// relative; they are stored relative (`etc/passwd`), as image layers are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

/// Mode of the directories a file's parents get implicitly.
const PARENT_MODE: u32 = 0o755;

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a regular file (and its parent directories, `0755 0:0`, unless already present).
    pub fn file(&mut self, path: &str, contents: Vec<u8>, mode: u32) -> Result<&mut Self, Error> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.insert(path, Node::File { contents, mode })?;
        Ok(self)
    }

    /// Adds a directory with `mode` and `owner` (and its parents).
    pub fn dir(&mut self, path: &str, mode: u32, owner: (u32, u32)) -> Result<&mut Self, Error> {
        let path = normalize(path)?;
        self.parents(&path)?;
        match self.nodes.get(&path) {
            Some(Node::File { .. }) => return Err(Error::Tree(format!("{path} is already a file"))),
            _ => self.nodes.insert(path, Node::Dir { mode, owner }),
        };
        Ok(self)
    }

    /// The nodes, in the order they are written.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(p, n)| (p.as_str(), n))
    }

    fn parents(&mut self, path: &str) -> Result<(), Error> {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            match self.nodes.get(&prefix) {
                Some(Node::File { .. }) => return Err(Error::Tree(format!("{prefix} is a file, not a directory"))),
                Some(Node::Dir { .. }) => {}
                None => {
                    self.nodes.insert(prefix.clone(), Node::Dir { mode: PARENT_MODE, owner: (0, 0) });
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, path: String, node: Node) -> Result<(), Error> {
        if self.nodes.contains_key(&path) {
            return Err(Error::Tree(format!("{path} is added twice")));
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    /// The tar archive of this tree, every entry with modification time `mtime` (seconds since
    /// the epoch). The archive ends with the two zero blocks tar requires.
    pub fn to_tar(&self, mtime: u64) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        // BTreeMap order is byte order, so `etc` comes before `etc/passwd`: parents first.
        for (path, node) in &self.nodes {
            match node {
                Node::File { contents, mode } => {
                    out.extend_from_slice(&header(path, b'0', contents.len() as u64, *mode, (0, 0), mtime)?);
                    out.extend_from_slice(contents);
                    out.resize(out.len().next_multiple_of(BLOCK), 0);
                }
                Node::Dir { mode, owner } => {
                    out.extend_from_slice(&header(&format!("{path}/"), b'5', 0, *mode, *owner, mtime)?);
                }
            }
        }
        out.resize(out.len() + 2 * BLOCK, 0);
        Ok(out)
    }
}

const BLOCK: usize = 512;

fn normalize(path: &str) -> Result<String, Error> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() || trimmed.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        return Err(Error::Tree(format!("{path:?} is not a plain path")));
    }
    Ok(trimmed.to_string())
}

/// A POSIX ustar header.
fn header(path: &str, kind: u8, size: u64, mode: u32, owner: (u32, u32), mtime: u64) -> Result<[u8; BLOCK], Error> {
    let mut h = [0u8; BLOCK];
    let (prefix, name) = split_name(path)?;
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    octal(&mut h[100..108], u64::from(mode & 0o7777))?;
    octal(&mut h[108..116], u64::from(owner.0))?;
    octal(&mut h[116..124], u64::from(owner.1))?;
    octal(&mut h[124..136], size)?;
    octal(&mut h[136..148], mtime)?;
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let field = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(field.as_bytes());
    Ok(h)
}

/// ustar keeps up to 100 bytes of name and 155 of prefix, split at a `/`.
fn split_name(path: &str) -> Result<(&str, &str), Error> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    let too_long = || Error::Tree(format!("{path} is too long for a ustar header"));
    // The cut is a '/' within the last 101 bytes; start the search at a character boundary
    // (paths may hold any UTF-8).
    let start = (path.len().saturating_sub(101)..path.len()).find(|&i| path.is_char_boundary(i)).unwrap_or(path.len());
    let cut = path[start..].find('/').map(|i| start + i).ok_or_else(too_long)?;
    let (prefix, name) = (&path[..cut], &path[cut + 1..]);
    if prefix.len() > 155 || name.is_empty() || name.len() > 100 {
        return Err(too_long());
    }
    Ok((prefix, name))
}

fn octal(field: &mut [u8], value: u64) -> Result<(), Error> {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() > digits {
        return Err(Error::Tree(format!("{value} does not fit a {digits}-digit tar field")));
    }
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tree {
        let mut tree = Tree::new();
        tree.file("/usr/local/bin/tool", b"#!/bin/true\n".to_vec(), 0o755).unwrap();
        tree.file("/etc/passwd", b"root:x:0:0::/root:/sbin/nologin\n".to_vec(), 0o644).unwrap();
        tree.dir("/tmp", 0o1777, (0, 0)).unwrap();
        tree
    }

    /// (path, type flag, mode, uid, gid, size, mtime) of every entry, parsed back from the archive.
    fn entries(tar: &[u8]) -> Vec<(String, u8, u32, u32, u32, u64, u64)> {
        let field = |h: &[u8]| {
            let text = std::str::from_utf8(h).unwrap().trim_end_matches(['\0', ' ']);
            u64::from_str_radix(text, 8).unwrap()
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at + BLOCK <= tar.len() && tar[at..at + BLOCK].iter().any(|&b| b != 0) {
            let h = &tar[at..at + BLOCK];
            let name = String::from_utf8(h[..100].iter().take_while(|&&b| b != 0).copied().collect()).unwrap();
            let size = field(&h[124..136]);
            out.push((
                name,
                h[156],
                field(&h[100..108]) as u32,
                field(&h[108..116]) as u32,
                field(&h[116..124]) as u32,
                size,
                field(&h[136..148]),
            ));
            at += BLOCK + (size as usize).next_multiple_of(BLOCK);
        }
        out
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes_whatever_the_insertion_order() {
        let mut reversed = Tree::new();
        reversed.dir("/tmp", 0o1777, (0, 0)).unwrap();
        reversed.file("/etc/passwd", b"root:x:0:0::/root:/sbin/nologin\n".to_vec(), 0o644).unwrap();
        reversed.file("/usr/local/bin/tool", b"#!/bin/true\n".to_vec(), 0o755).unwrap();
        assert_eq!(sample().to_tar(1_700_000_000).unwrap(), reversed.to_tar(1_700_000_000).unwrap());
        assert_ne!(sample().to_tar(1).unwrap(), sample().to_tar(2).unwrap(), "the mtime is in the bytes");
    }

    #[test]
    fn entries_are_sorted_parents_first_with_fixed_times_owners_and_modes() {
        let tar = sample().to_tar(1_700_000_000).unwrap();
        assert_eq!(tar.len() % BLOCK, 0);
        assert!(tar[tar.len() - 2 * BLOCK..].iter().all(|&b| b == 0), "two zero blocks end the archive");
        let entries = entries(&tar);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["etc/", "etc/passwd", "tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/tool"]);
        for (name, kind, mode, uid, gid, _, mtime) in &entries {
            assert_eq!((*uid, *gid, *mtime), (0, 0, 1_700_000_000), "{name}");
            let expected = match name.as_str() {
                "etc/passwd" => (b'0', 0o644),
                "usr/local/bin/tool" => (b'0', 0o755),
                "tmp/" => (b'5', 0o1777),
                _ => (b'5', 0o755),
            };
            assert_eq!((*kind, *mode), expected, "{name}");
        }
    }

    #[test]
    fn long_paths_use_the_ustar_prefix_and_bad_paths_are_refused() {
        let (d, e) = ("d".repeat(60), "e".repeat(60));
        let long = format!("/{d}/{e}/{}", "f".repeat(90));
        let mut tree = Tree::new();
        tree.file(&long, vec![1], 0o644).unwrap();
        let tar = tree.to_tar(0).unwrap();
        let file = &tar[2 * BLOCK..3 * BLOCK];
        assert_eq!(&file[..90], "f".repeat(90).as_bytes());
        assert_eq!(&file[345..466], format!("{d}/{e}").as_bytes());
        assert_eq!(file[466], 0);
        let mut deep = Tree::new();
        deep.file(&format!("/{}/f", "d".repeat(120)), vec![], 0o644).unwrap();
        assert!(deep.to_tar(0).is_err(), "a 120-byte path component fits no ustar field");
        assert!(Tree::new().file("/etc/../passwd", vec![], 0o644).is_err());
        assert!(tree.file(&long, vec![2], 0o644).is_err(), "a path added twice");
        let mut clash = Tree::new();
        clash.file("/etc", vec![], 0o644).unwrap();
        assert!(clash.file("/etc/passwd", vec![], 0o644).is_err(), "a file where a directory must be");
    }

    #[test]
    fn long_paths_with_multibyte_characters_are_split_at_a_slash() {
        // Found by the fuzzer (crates/image/tests/fuzz.rs): the search for the '/' that splits a
        // long path started inside a multi-byte character and panicked.
        let shrunk =
            "z9dzL2Mvz9dzbC9jZXJ0cy9jL8/Xc2wvY2VydHMvYy/P13NsL2NlcnRzL2Mvz9dzbC9jZXJ0cy9jL8/Xc2wvY2VydHMvYy/P12E=";
        let bytes = base64_decode(shrunk);
        let path = String::from_utf8_lossy(&bytes).into_owned();
        let mut tree = Tree::new();
        tree.file(&path, vec![1], 0o644).unwrap();
        let _ = tree.to_tar(0);
        let long = format!("/{}/{}/f", "é".repeat(40), "ü".repeat(40));
        let mut tree = Tree::new();
        tree.file(&long, vec![1], 0o644).unwrap();
        let tar = tree.to_tar(0).unwrap();
        let file = &tar[2 * BLOCK..3 * BLOCK];
        let name = format!("{}/f", "ü".repeat(40));
        assert_eq!(&file[..name.len() + 1], format!("{name}\0").as_bytes());
        assert_eq!(&file[345..345 + 81], format!("{}\0", "é".repeat(40)).as_bytes());
    }

    /// Standard base64, for the fuzzer's report of the input above.
    fn base64_decode(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
        let mut out = Vec::new();
        for chunk in digits.chunks(4) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
            out.extend(n.to_be_bytes()[1..].iter().take(chunk.len() - 1));
        }
        out
    }
}
