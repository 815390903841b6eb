//! Test fixture: a temporary directory standing in for `/`, filled file by file.

use std::path::Path;

use super::root::Root;

pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Creates `relative` (and its parents) holding `contents` and a newline.
    pub fn file(&self, relative: &str, contents: &str) -> &Fixture {
        let path = self.dir.path().join(relative);
        let parent = path.parent().expect("relative path has a parent");
        std::fs::create_dir_all(parent).expect("create fixture dirs");
        std::fs::write(&path, format!("{contents}\n")).expect("write fixture file");
        self
    }

    pub fn read(&self, relative: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(relative)).expect("read fixture");
        text.trim().to_string()
    }

    pub fn root(&self) -> Root {
        Root::new(self.dir.path())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}
