//! The stock kernel's modules the test host loads: virtio (PCI transport and
//! block device) and ext4, with what they need.
//!
//! Debian's image package ships the modules (`lib/modules/<release>/kernel/…`,
//! uncompressed `.ko` files in Bookworm: `CONFIG_MODULE_COMPRESS_NONE`, so
//! busybox `insmod` takes them as they are) but no `modules.dep`: the
//! package's postinst runs `depmod`. [`super`] unpacks the modules into a
//! temporary directory, runs `depmod -b` on it (kmod's, on the build
//! machine: no root needed) and hands the resulting `modules.dep`,
//! `modules.softdep` and `modules.alias` to [`resolve`], which computes the
//! load order of [`ROOTS`]: hard dependencies first (from `modules.dep`),
//! `pre:` soft dependencies before them (`ext4` and `jbd2` want
//! `crypto-crc32c`, which two modules provide: `crc32c_intel` and
//! `crc32c_generic`; one of them loading is enough, as with modprobe).
//!
//! The cache keeps only the resolved modules, under
//! `<cache>/host-kernel/<release>/modules/` with their package paths
//! (`kernel/fs/ext4/ext4.ko`, …), a `modules.dep` trimmed to them (so busybox
//! `modprobe` works in the host too) and the plan ([`PLAN_FILE`], written
//! last: a directory without it, or with other roots, is refetched).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};

/// What the test host can load: the modules asked for by name (their
/// dependencies follow). Changing this list makes every cache refetch the
/// modules once.
/// `tun` and `dummy` are for conet: a TAP for the guest, and an interface
/// with a default route, which passt needs as its template (the test host
/// has no network card).
pub const ROOTS: &[&str] = &["virtio_pci", "virtio_blk", "ext4", "tun", "dummy"];

/// The plan's file name in the cached modules directory.
pub const PLAN_FILE: &str = "colinux-load-plan";

/// The first line of a plan file (its format's version).
const PLAN_HEADER: &str = "# colinux-testrig module load plan v1";

/// One module file, by its name (`-` turned into `_`, as the kernel names
/// it in `/sys/module`) and its path relative to `lib/modules/<release>/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ModuleFile {
    pub name: String,
    pub path: String,
}

/// One step of loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Load {
    /// This module must load.
    Module(ModuleFile),
    /// A soft dependency on an alias several modules provide: the chains
    /// are tried in order, each module of a chain loaded in turn (its own
    /// dependencies first), and one chain loading completely is enough.
    AnyOf {
        alias: String,
        chains: Vec<Vec<ModuleFile>>,
    },
}

/// The modules to load, in order, for [`LoadPlan::roots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    pub roots: Vec<String>,
    pub steps: Vec<Load>,
}

impl LoadPlan {
    /// Every module file the plan names (each once).
    pub fn files(&self) -> BTreeSet<&ModuleFile> {
        let mut all = BTreeSet::new();
        for step in &self.steps {
            match step {
                Load::Module(m) => {
                    all.insert(m);
                }
                Load::AnyOf { chains, .. } => all.extend(chains.iter().flatten()),
            }
        }
        all
    }

    /// The plan as text ([`LoadPlan::parse`] reads it back):
    /// `roots NAME…`, then `load NAME PATH` or
    /// `anyof ALIAS NAME=PATH[+NAME=PATH…] …` per step.
    pub fn render(&self) -> String {
        let mut out = format!("{PLAN_HEADER}\nroots {}\n", self.roots.join(" "));
        for step in &self.steps {
            match step {
                Load::Module(m) => {
                    let _ = writeln!(out, "load {} {}", m.name, m.path);
                }
                Load::AnyOf { alias, chains } => {
                    let chains: Vec<String> = chains
                        .iter()
                        .map(|c| {
                            c.iter()
                                .map(|m| format!("{}={}", m.name, m.path))
                                .collect::<Vec<_>>()
                                .join("+")
                        })
                        .collect();
                    let _ = writeln!(out, "anyof {alias} {}", chains.join(" "));
                }
            }
        }
        out
    }

    /// Read a plan written by [`LoadPlan::render`].
    pub fn parse(text: &str) -> Result<LoadPlan> {
        let mut lines = text.lines();
        if lines.next() != Some(PLAN_HEADER) {
            bail!("not a module load plan (the first line is not {PLAN_HEADER:?})");
        }
        let mut roots = None;
        let mut steps = Vec::new();
        for (n, line) in lines.enumerate() {
            let n = n + 2;
            let mut words = line.split_whitespace();
            match words.next() {
                None => {}
                Some("roots") => roots = Some(words.map(str::to_string).collect()),
                Some("load") => match (words.next(), words.next(), words.next()) {
                    (Some(name), Some(path), None) => steps.push(Load::Module(ModuleFile {
                        name: name.to_string(),
                        path: checked_path(path).with_context(|| format!("line {n}"))?,
                    })),
                    _ => bail!("line {n}: expected `load NAME PATH`: {line:?}"),
                },
                Some("anyof") => {
                    let alias = words
                        .next()
                        .with_context(|| format!("line {n}: `anyof` without an alias"))?;
                    let mut chains = Vec::new();
                    for chain in words {
                        let mut mods = Vec::new();
                        for m in chain.split('+') {
                            let (name, path) = m.split_once('=').with_context(|| {
                                format!("line {n}: expected NAME=PATH, found {m:?}")
                            })?;
                            mods.push(ModuleFile {
                                name: name.to_string(),
                                path: checked_path(path).with_context(|| format!("line {n}"))?,
                            });
                        }
                        chains.push(mods);
                    }
                    if chains.is_empty() {
                        bail!("line {n}: `anyof {alias}` names no module");
                    }
                    steps.push(Load::AnyOf {
                        alias: alias.to_string(),
                        chains,
                    });
                }
                Some(w) => bail!("line {n}: unknown word {w:?}"),
            }
        }
        Ok(LoadPlan {
            roots: roots.context("the plan has no `roots` line")?,
            steps,
        })
    }

    /// `modules.dep` for the plan's modules alone (each with its
    /// dependencies from `index`), for busybox `modprobe` in the host.
    pub fn trimmed_dep(&self, index: &ModuleIndex) -> String {
        let mut out = String::new();
        for m in self.files() {
            let deps = index
                .modules
                .get(&m.name)
                .map(|e| e.deps.join(" "))
                .unwrap_or_default();
            let _ = writeln!(out, "{}: {deps}", m.path);
        }
        out
    }
}

/// A module path from a plan or `modules.dep`: relative, no `..`.
fn checked_path(path: &str) -> Result<String> {
    if path.is_empty()
        || path.starts_with('/')
        || path.split('/').any(|c| c == ".." || c.is_empty())
        || !is_module_file(path)
    {
        bail!("{path:?} is not a relative path of a module file");
    }
    Ok(path.to_string())
}

/// Whether `path` names a module file (compressed or not).
fn is_module_file(path: &str) -> bool {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|s| path.ends_with(s))
}

/// The kernel's name for the module at `path`: the file name without
/// `.ko[.xz|.zst|.gz]`, `-` as `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|s| file.strip_suffix(s))
        .unwrap_or(file);
    stem.replace('-', "_")
}

/// One module in `modules.dep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub path: String,
    /// The paths of its dependencies, as `modules.dep` lists them.
    pub deps: Vec<String>,
}

/// What depmod wrote: dependencies, soft dependencies, aliases.
#[derive(Debug, Default, Clone)]
pub struct ModuleIndex {
    /// By module name.
    pub modules: BTreeMap<String, IndexEntry>,
    /// `softdep NAME pre: …`: module name → the names or aliases to load
    /// before it.
    pub soft_pre: BTreeMap<String, Vec<String>>,
    /// Exact aliases (no wildcards) → module names, in file order.
    pub aliases: BTreeMap<String, Vec<String>>,
}

impl ModuleIndex {
    /// Parse depmod's `modules.dep`, `modules.softdep` and `modules.alias`.
    pub fn parse(dep: &str, softdep: &str, alias: &str) -> Result<ModuleIndex> {
        let mut index = ModuleIndex::default();
        for (n, line) in dep.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (path, deps) = line
                .split_once(':')
                .with_context(|| format!("modules.dep line {}: no colon: {line:?}", n + 1))?;
            let path =
                checked_path(path.trim()).with_context(|| format!("modules.dep line {}", n + 1))?;
            let deps = deps
                .split_whitespace()
                .map(|d| checked_path(d).with_context(|| format!("modules.dep line {}", n + 1)))
                .collect::<Result<Vec<_>>>()?;
            index
                .modules
                .insert(module_name(&path), IndexEntry { path, deps });
        }
        for line in softdep.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(name) = words.next() else { continue };
            let mut pre = false;
            for w in words {
                match w {
                    "pre:" => pre = true,
                    "post:" => pre = false,
                    _ if pre => index
                        .soft_pre
                        .entry(name.replace('-', "_"))
                        .or_default()
                        .push(w.to_string()),
                    _ => {}
                }
            }
        }
        for line in alias.lines() {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(a), Some(m)) = (words.next(), words.next(), words.next()) {
                if !a.contains(['*', '?', '[']) {
                    index
                        .aliases
                        .entry(a.to_string())
                        .or_default()
                        .push(m.replace('-', "_"));
                }
            }
        }
        Ok(index)
    }
}

/// The load order of `roots` (module names) and everything they need.
/// Errors name a root or dependency that `modules.dep` does not have, and
/// dependency cycles.
pub fn resolve(index: &ModuleIndex, roots: &[&str]) -> Result<LoadPlan> {
    let mut r = Resolver {
        index,
        done: BTreeSet::new(),
        visiting: Vec::new(),
        steps: Vec::new(),
    };
    for root in roots {
        let name = root.replace('-', "_");
        if !index.modules.contains_key(&name) {
            bail!(
                "the host kernel has no module {root:?} (not in modules.dep; \
                 is it built in? see the kernel's config)"
            );
        }
        r.module(&name)
            .with_context(|| format!("resolving the module {root}"))?;
    }
    Ok(LoadPlan {
        roots: roots.iter().map(|r| r.to_string()).collect(),
        steps: r.steps,
    })
}

struct Resolver<'a> {
    index: &'a ModuleIndex,
    done: BTreeSet<String>,
    visiting: Vec<String>,
    steps: Vec<Load>,
}

impl Resolver<'_> {
    /// Add `name` after what it needs (soft `pre:` dependencies, then hard
    /// ones).
    fn module(&mut self, name: &str) -> Result<()> {
        if self.done.contains(name) {
            return Ok(());
        }
        if self.visiting.iter().any(|v| v == name) {
            bail!("dependency cycle: {} -> {name}", self.visiting.join(" -> "));
        }
        let entry = self
            .index
            .modules
            .get(name)
            .with_context(|| format!("{name} is not in modules.dep"))?;
        self.visiting.push(name.to_string());
        for soft in self.index.soft_pre.get(name).into_iter().flatten() {
            self.soft(soft)?;
        }
        for dep in &entry.deps {
            let dep_name = module_name(dep);
            self.module(&dep_name)
                .with_context(|| format!("{name} needs {dep}"))?;
        }
        self.visiting.pop();
        self.done.insert(name.to_string());
        self.steps.push(Load::Module(ModuleFile {
            name: name.to_string(),
            path: entry.path.clone(),
        }));
        Ok(())
    }

    /// A soft dependency: a module name, or an alias one or more modules
    /// provide. One that is neither (e.g. built into the kernel) is skipped.
    fn soft(&mut self, want: &str) -> Result<()> {
        let as_name = want.replace('-', "_");
        if self.index.modules.contains_key(&as_name) {
            return self.module(&as_name);
        }
        let providers: Vec<&String> = self
            .index
            .aliases
            .get(want)
            .into_iter()
            .flatten()
            .filter(|m| self.index.modules.contains_key(*m))
            .collect();
        match providers.as_slice() {
            [] => {
                tracing::debug!("soft dependency {want}: no module provides it (built in?)");
                Ok(())
            }
            [one] => self.module(one),
            _ => {
                if providers.iter().any(|p| self.done.contains(*p)) {
                    return Ok(());
                }
                let mut chains = Vec::new();
                for p in providers {
                    // Each provider's own chain, computed apart from the
                    // main order: only one of them has to load.
                    let mut sub = Resolver {
                        index: self.index,
                        done: self.done.clone(),
                        visiting: self.visiting.clone(),
                        steps: Vec::new(),
                    };
                    sub.module(p)?;
                    let mut chain = Vec::new();
                    for s in sub.steps {
                        match s {
                            Load::Module(m) => chain.push(m),
                            Load::AnyOf { alias, .. } => bail!(
                                "{p} (for {want}) has a soft dependency on {alias}, which \
                                 several modules provide: not supported"
                            ),
                        }
                    }
                    chains.push(chain);
                }
                // Later steps must not load these again; they count as done
                // (one of them is, once the step ran).
                for chain in &chains {
                    for m in chain {
                        self.done.insert(m.name.clone());
                    }
                }
                self.steps.push(Load::AnyOf {
                    alias: want.to_string(),
                    chains,
                });
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Bookworm's 6.1.0-57-amd64, as depmod wrote it (the lines that matter).
    const DEP: &str = "\
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/crypto/crc32c_generic.ko:
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/lib/libcrc32c.ko:
kernel/drivers/net/tun.ko:
kernel/drivers/net/dummy.ko:
";
    const SOFTDEP: &str = "\
# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep jbd2 pre: crypto-crc32c
softdep libcrc32c pre: crc32c
";
    const ALIAS: &str = "\
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias crypto-crc32c crc32c_intel
alias crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias crc32c crc32c_generic
";

    fn names(plan: &LoadPlan) -> Vec<String> {
        plan.steps
            .iter()
            .map(|s| match s {
                Load::Module(m) => m.name.clone(),
                Load::AnyOf { alias, chains } => format!(
                    "{alias}?{}",
                    chains
                        .iter()
                        .map(|c| c
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join("+"))
                        .collect::<Vec<_>>()
                        .join("|")
                ),
            })
            .collect()
    }

    #[test]
    fn resolves_the_test_hosts_modules_in_dependency_order() {
        let index = ModuleIndex::parse(DEP, SOFTDEP, ALIAS).unwrap();
        let plan = resolve(&index, ROOTS).unwrap();
        assert_eq!(
            names(&plan),
            [
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio",
                "virtio_ring",
                "virtio_pci",
                "virtio_blk",
                "crypto-crc32c?crc32c_intel|crc32c_generic",
                "crc16",
                "mbcache",
                "jbd2",
                "ext4",
                "tun",
                "dummy",
            ]
        );
        // Every module after its dependencies.
        let order: Vec<String> = names(&plan);
        for (name, e) in &index.modules {
            if let Some(at) = order.iter().position(|n| n == name) {
                for d in &e.deps {
                    let d = module_name(d);
                    let dat = order.iter().position(|n| *n == d).unwrap();
                    assert!(dat < at, "{d} after {name}");
                }
            }
        }
        assert_eq!(
            plan.files()
                .iter()
                .find(|m| m.name == "crc32c_intel")
                .unwrap()
                .path,
            "kernel/arch/x86/crypto/crc32c-intel.ko"
        );
    }

    #[test]
    fn plans_render_and_parse_back() {
        let index = ModuleIndex::parse(DEP, SOFTDEP, ALIAS).unwrap();
        let plan = resolve(&index, ROOTS).unwrap();
        let text = plan.render();
        assert!(
            text.contains("load ext4 kernel/fs/ext4/ext4.ko\n"),
            "{text}"
        );
        assert!(text.contains(
            "anyof crypto-crc32c crc32c_intel=kernel/arch/x86/crypto/crc32c-intel.ko \
             crc32c_generic=kernel/crypto/crc32c_generic.ko\n"
        ));
        assert_eq!(LoadPlan::parse(&text).unwrap(), plan);
        assert!(LoadPlan::parse("roots x\n").is_err());
        let bad = format!("{PLAN_HEADER}\nroots x\nload x /etc/passwd.ko\n");
        assert!(LoadPlan::parse(&bad).is_err());
        let bad = format!("{PLAN_HEADER}\nroots x\nload x ../x.ko\n");
        assert!(LoadPlan::parse(&bad).is_err());
        let dep = plan.trimmed_dep(&index);
        assert!(dep.contains(
            "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n"
        ));
        assert!(!dep.contains("libcrc32c"));
    }

    #[test]
    fn a_single_provider_is_a_plain_step_and_missing_soft_deps_are_skipped() {
        let alias = "alias crypto-crc32c crc32c_generic\n";
        let softdep = "softdep ext4 pre: crypto-crc32c crc-t10dif post: nothing\n";
        let index = ModuleIndex::parse(DEP, softdep, alias).unwrap();
        let plan = resolve(&index, &["ext4"]).unwrap();
        assert_eq!(
            names(&plan),
            ["crc32c_generic", "crc16", "mbcache", "jbd2", "ext4"]
        );
    }

    #[test]
    fn unknown_roots_and_cycles_are_errors_naming_them() {
        let index = ModuleIndex::parse(DEP, "", "").unwrap();
        let e = format!("{:#}", resolve(&index, &["btrfs"]).unwrap_err());
        assert!(e.contains("\"btrfs\""), "{e}");
        let dep = "kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n";
        let index = ModuleIndex::parse(dep, "", "").unwrap();
        let e = format!("{:#}", resolve(&index, &["a"]).unwrap_err());
        assert!(e.contains("cycle: a -> b -> a"), "{e}");
        let index = ModuleIndex::parse("kernel/a.ko: kernel/missing.ko\n", "", "").unwrap();
        let e = format!("{:#}", resolve(&index, &["a"]).unwrap_err());
        assert!(e.contains("missing"), "{e}");
        assert!(ModuleIndex::parse("no colon here\n", "", "").is_err());
    }

    #[test]
    fn names_modules_like_the_kernel() {
        assert_eq!(
            module_name("kernel/arch/x86/crypto/crc32c-intel.ko"),
            "crc32c_intel"
        );
        assert_eq!(module_name("kernel/fs/ext4/ext4.ko.xz"), "ext4");
        assert_eq!(module_name("virtio_blk.ko.zst"), "virtio_blk");
    }
}
