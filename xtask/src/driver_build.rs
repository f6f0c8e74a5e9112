//! `cargo xtask build-driver`: the host kernel module `colinux.ko`.
//!
//! The module is a thin C shim (`driver/kbuild/colinux_shim.c`) plus the
//! `no_std` Rust core (`driver/`, crate `colinux-driver-core`), built like
//! this:
//!
//! 1. the core with cargo for `x86_64-unknown-none` as a `staticlib`
//!    (kernel code model, static relocations, no jump tables, no unwind
//!    tables, panic=abort; the target is soft-float and has no red zone);
//! 2. its own objects (not libcore, not compiler_builtins) combined with
//!    `ld -r --gc-sections` from the `colinux_core_*` entry points, then
//!    `objcopy`: debug info and unused undefined symbols dropped,
//!    `memcpy`/`memset`/… renamed to the shim's `colinux_shim_mem*`, and
//!    every global but `colinux_core_*` made local. The result must need
//!    nothing but `colinux_shim_*` functions (checked with `nm -u`), must
//!    have no GOT relocations (the module loader has none), no indirect
//!    branches (retpoline kernels) and no SSE code;
//! 3. a Kbuild directory `target/driver/<release>/build/`: the files of
//!    `driver/kbuild/`, that object as `colinux_core.o_shipped` with the
//!    Kbuild rule that copies it with `if_changed` (which writes the
//!    `.colinux_core.o.cmd` modpost wants), and the ABI header taken
//!    from the guest patch series as `include/linux/cooperative.h` (the
//!    series owns it; it is never copied into the repository);
//! 4. `make -C <kernel build dir> M=<that directory> modules`; any warning
//!    fails the build. The module is copied to
//!    `target/driver/<release>/colinux.ko`.
//!
//! The kernel build directory is Debian's stock `linux-headers-<release>`
//! from [`colinux_testrig::hostkernel::ensure`], or one given by the caller.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use colinux_buildenv::{paths, sysdeps};
use colinux_testrig::hostkernel;

use crate::codegen;

/// The Rust target of the core.
pub const CORE_TARGET: &str = "x86_64-unknown-none";

/// The interface between the shim and the core, which owns the list of
/// functions each side provides.
const CORE_HEADER: &str = "driver/kbuild/colinux_core.h";

/// The functions `driver/kbuild/colinux_core.h` declares whose names start
/// with `prefix` (`colinux_core_`: the core exports them to the shim;
/// `colinux_shim_`: the shim provides them, and the core object may need
/// these and nothing else).
pub fn interface_functions(prefix: &str) -> Result<Vec<String>> {
    let path = paths::repo_root().join(CORE_HEADER);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut names: Vec<String> = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let declared = text[i + name.len()..].starts_with('(');
        let boundary =
            i == 0 || !text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if declared && boundary && name.len() > prefix.len() && !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        bail!("{} declares no {prefix}* function", path.display());
    }
    Ok(names)
}

/// Compiler-generated calls renamed to shim functions.
const RENAMED: &[(&str, &str)] = &[
    ("memcpy", "colinux_shim_memcpy"),
    ("memmove", "colinux_shim_memmove"),
    ("memset", "colinux_shim_memset"),
    ("memcmp", "colinux_shim_memcmp"),
];

/// The files of `driver/kbuild/` that make up the Kbuild directory.
const KBUILD_FILES: &[&str] = &[
    "Kbuild",
    "Makefile",
    "colinux_shim.c",
    "colinux_core.h",
    "colinux_passage.c",
    "colinux_passage.h",
    "colinux_passage_c.h",
    "colinux_passage_asm.S",
];

/// Where the driver's outputs go: `target/driver/`.
pub fn output_root() -> PathBuf {
    paths::target_dir().join("driver")
}

/// Build `colinux.ko` against the kernel build directory `kernel_build_dir`
/// (default: Debian's stock headers, installed on demand) and return its
/// path, `target/driver/<release>/colinux.ko`.
pub fn build_driver(kernel_build_dir: Option<&Path>) -> Result<PathBuf> {
    sysdeps::ensure("building the host driver", sysdeps::DRIVER_BUILD)?;
    let (kdir, release) = match kernel_build_dir {
        Some(dir) => {
            let release = kernel_release(dir)?;
            (dir.to_path_buf(), release)
        }
        None => {
            let k = hostkernel::ensure()?;
            (k.build_dir, k.release)
        }
    };
    let core = build_core(&kdir.join("tools/objtool/objtool"))?;
    let out = output_root().join(&release);
    let build = out.join("build");
    prepare_kbuild_dir(&build, &core)?;
    run_kbuild(&kdir, &build)?;
    let ko = out.join("colinux.ko");
    std::fs::copy(build.join("colinux.ko"), &ko)
        .with_context(|| format!("cannot copy colinux.ko to {}", ko.display()))?;
    tracing::info!("host driver for {release}: {}", ko.display());
    Ok(ko)
}

/// The release of a kernel build directory: `UTS_RELEASE` in
/// `include/generated/utsrelease.h` (what `uname -r` and the module's
/// vermagic say; Debian's `include/config/kernel.release` holds the upstream
/// version instead).
pub fn kernel_release(kernel_build_dir: &Path) -> Result<String> {
    let file = kernel_build_dir.join("include/generated/utsrelease.h");
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "{} is not a prepared kernel build directory (no {})",
            kernel_build_dir.display(),
            file.display()
        )
    })?;
    let release = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("#define UTS_RELEASE"))
        .map(|r| r.trim().trim_matches('"').to_string())
        .unwrap_or_default();
    if release.is_empty() || release.contains(['/', ' ']) {
        bail!("{}: no kernel release in it", file.display());
    }
    Ok(release)
}

fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    tracing::debug!("running {shown}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// Build the Rust core and make the object Kbuild links:
/// `target/driver/core/colinux_core.o`. `objtool` (the kernel build
/// directory's) lists the core's returns in `.return_sites`.
pub fn build_core(objtool: &Path) -> Result<PathBuf> {
    let root = output_root();
    let target_dir = root.join("cargo");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let rustflags = [
        "-Crelocation-model=static",
        "-Ccode-model=kernel",
        // No jump tables (indirect jumps) and no unwind tables.
        "-Cjump-tables=no",
        "-Cforce-unwind-tables=no",
        // Without full RELRO rustc calls external functions directly, not
        // through the GOT, which the kernel's module loader cannot resolve.
        "-Crelro-level=off",
        // Every return through the kernel's return thunk, as the kernel's
        // own code returns (retbleed, SRSO, ITS): `objtool --rethunk` lists
        // the sites and the module loader patches them to the host's
        // choice. An unstable flag, enabled with RUSTC_BOOTSTRAP as the
        // kernel's own Rust build does.
        "-Zfunction-return=thunk-extern",
    ]
    .join("\x1f");
    tracing::info!("building the driver core (colinux-driver-core for {CORE_TARGET})");
    run(Command::new(cargo)
        .current_dir(paths::repo_root())
        .args([
            "rustc",
            "--quiet",
            "--package",
            "colinux-driver-core",
            "--release",
            "--target",
            CORE_TARGET,
            "--crate-type",
            "staticlib",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTFLAGS")
        // Not LTO: it would merge libcore's module flags, which make calls go
        // through the GOT. One codegen unit keeps it one object.
        .env("CARGO_PROFILE_RELEASE_LTO", "false")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "2")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false"))
    .context("building the driver core failed")?;
    let lib = target_dir
        .join(CORE_TARGET)
        .join("release")
        .join("libcolinux_driver_core.a");
    let out_dir = root.join("core");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let object = out_dir.join("colinux_core.o");
    link_core(&lib, &object, objtool)?;
    Ok(object)
}

/// Combine the workspace's objects of `lib` into one relocatable object for
/// the kernel, and check it.
fn link_core(lib: &Path, object: &Path, objtool: &Path) -> Result<()> {
    let work = tempfile::Builder::new()
        .prefix(".link-")
        .tempdir_in(object.parent().context("object has no directory")?)
        .context("cannot create a temporary directory")?;
    let members: Vec<String> = run(Command::new("ar").arg("t").arg(lib))?
        .lines()
        .filter(|m| m.starts_with("colinux_"))
        .map(str::to_string)
        .collect();
    if members.is_empty() {
        bail!("{} holds no colinux object", lib.display());
    }
    run(Command::new("ar")
        .arg("x")
        .arg(lib)
        .args(&members)
        .current_dir(work.path()))?;
    let linked = work.path().join("linked.o");
    let mut ld = Command::new("ld");
    ld.args(["-r", "--gc-sections"]);
    for e in interface_functions("colinux_core_")? {
        ld.args(["-u", &e]);
    }
    run(ld
        .args(["-o"])
        .arg(&linked)
        .args(&members)
        .current_dir(work.path()))?;
    let clean = work.path().join("clean.o");
    run(Command::new("objcopy")
        .args([
            "--strip-debug",
            "-R",
            ".llvmbc",
            "-R",
            ".llvmcmd",
            "-R",
            ".comment",
        ])
        .arg(&linked)
        .arg(&clean))?;

    // `ld -r` keeps the undefined symbols of sections it collected: drop the
    // ones no relocation uses any more.
    let referenced = relocation_symbols(&run(Command::new("objdump").arg("-r").arg(&clean))?);
    let undefined = undefined_symbols(&run(Command::new("nm").arg("-u").arg(&clean))?);
    let mut objcopy = Command::new("objcopy");
    for sym in undefined.difference(&referenced) {
        objcopy.arg(format!("--strip-symbol={sym}"));
    }
    for (from, to) in RENAMED {
        objcopy.arg(format!("--redefine-sym={from}={to}"));
    }
    objcopy.arg("-w").arg("--keep-global-symbol=colinux_core_*");
    let tmp = work.path().join("colinux_core.o");
    run(objcopy.arg(&clean).arg(&tmp))?;
    run(Command::new(objtool)
        .args(["--rethunk", "--module"])
        .arg(&tmp))
    .with_context(|| {
        format!(
            "{} could not list the core's return sites",
            objtool.display()
        )
    })?;
    check_core(&tmp)?;
    std::fs::rename(&tmp, object)
        .or_else(|_| std::fs::copy(&tmp, object).map(|_| ()))
        .with_context(|| format!("cannot write {}", object.display()))?;
    Ok(())
}

/// Symbol names in `objdump -r` output (`OFFSET TYPE SYMBOL[+-ADDEND]`).
fn relocation_symbols(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, ty, value) = (f.next()?, f.next()?, f.next()?);
            ty.starts_with("R_").then_some(value)
        })
        .map(|v| v.split(['+', '-']).next().unwrap_or(v).to_string())
        .collect()
}

/// Symbol names in `nm -u` output.
fn undefined_symbols(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(str::to_string)
        .collect()
}

/// Check that the core object is fit for the kernel: it needs only shim
/// functions, exports the core's functions, has no GOT relocations, no
/// indirect branches and no SSE instructions.
pub fn check_core(object: &Path) -> Result<()> {
    let undefined = undefined_symbols(&run(Command::new("nm").arg("-u").arg(object))?);
    if undefined.contains("colinux_shim_panic") {
        bail!(
            "the driver core can panic (it references its panic handler); the kernel core \
             must not: find the indexing, unwrap or arithmetic that can panic with \
             `objdump -dr {}` and make it checked",
            object.display()
        );
    }
    let shim = interface_functions("colinux_shim_")?;
    let foreign: Vec<&String> = undefined
        .iter()
        .filter(|s| !shim.contains(s) && s.as_str() != RETURN_THUNK)
        .collect();
    if !foreign.is_empty() {
        bail!(
            "the driver core needs symbols the shim does not provide: {foreign:?}; it may use \
             only the colinux_shim_* functions of driver/kbuild/colinux_core.h (and the \
             kernel's {RETURN_THUNK})"
        );
    }
    let defined = run(Command::new("nm")
        .arg("--defined-only")
        .arg("-g")
        .arg(object))?;
    for e in interface_functions("colinux_core_")? {
        if !defined.lines().any(|l| l.ends_with(&format!(" T {e}"))) {
            bail!("the driver core does not export {e}");
        }
    }
    let relocs = run(Command::new("objdump").arg("-r").arg(object))?;
    if let Some(l) = relocs
        .lines()
        .find(|l| l.contains("GOTPC") || l.contains("_GOT"))
    {
        bail!("the driver core has a GOT relocation, which modules cannot have: {l}");
    }
    let code = run(Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(object))?;
    if let Some(l) = code.lines().find(|l| is_indirect_branch(l)) {
        bail!("the driver core has an indirect branch (not allowed with retpolines): {l}");
    }
    if let Some(l) = code
        .lines()
        .find(|l| l.contains("%xmm") || l.contains("%ymm"))
    {
        bail!("the driver core uses SSE registers, which kernel code must not: {l}");
    }
    if let Some(l) = code.lines().find(|l| is_plain_return(l)) {
        bail!("the driver core has a plain return, not one through {RETURN_THUNK}: {l}");
    }
    let sections = run(Command::new("objdump").arg("-h").arg(object))?;
    let thunk_jumps = relocs.lines().filter(|l| l.contains(RETURN_THUNK)).count();
    if thunk_jumps > 0 && !sections.contains(".return_sites") {
        bail!(
            "the driver core returns through {RETURN_THUNK} but has no .return_sites for the \
             module loader to patch them"
        );
    }
    Ok(())
}

/// The kernel's return thunk, which the core's returns jump to.
const RETURN_THUNK: &str = "__x86_return_thunk";

/// `objdump -d --no-show-raw-insn` line of a near `ret`.
fn is_plain_return(line: &str) -> bool {
    line.split('\t')
        .nth(1)
        .and_then(|insn| insn.split_whitespace().next())
        .is_some_and(|m| m == "ret" || m == "retq")
}

fn is_indirect_branch(line: &str) -> bool {
    let mut f = line.split('\t').skip(1);
    let Some(insn) = f.next() else {
        return false;
    };
    let insn = insn.trim();
    (insn.starts_with("call") || insn.starts_with("jmp")) && insn.contains('*')
}

/// Write `content` to `path` unless it already holds exactly that (so that
/// make sees unchanged inputs as unchanged).
fn write_if_changed(path: &Path, content: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, content).with_context(|| format!("cannot write {}", path.display()))
}

/// Lay out the Kbuild directory: the shim sources, the core object, the ABI
/// header.
pub fn prepare_kbuild_dir(build: &Path, core: &Path) -> Result<()> {
    let src = paths::repo_root().join("driver").join("kbuild");
    for f in KBUILD_FILES {
        let from = src.join(f);
        let content =
            std::fs::read(&from).with_context(|| format!("cannot read {}", from.display()))?;
        write_if_changed(&build.join(f), &content)?;
    }
    let object = std::fs::read(core).with_context(|| format!("cannot read {}", core.display()))?;
    write_if_changed(&build.join("colinux_core.o_shipped"), &object)?;
    // Left by older builds; Kbuild now writes it (if_changed).
    let stale = build.join(".colinux_core.o.cmd");
    if std::fs::metadata(&stale).is_ok_and(|m| m.len() == 0) {
        std::fs::remove_file(&stale)
            .with_context(|| format!("cannot remove {}", stale.display()))?;
    }
    let header = codegen::header_from_series(&paths::repo_root().join("linux-patches"))?;
    write_if_changed(
        &build.join("include/linux/cooperative.h"),
        header.as_bytes(),
    )?;
    let ioctl_src = paths::repo_root().join(codegen::IOCTL_HEADER);
    let ioctl = std::fs::read(&ioctl_src)
        .with_context(|| format!("cannot read {}", ioctl_src.display()))?;
    write_if_changed(&build.join("include/colinux/ioctl.h"), &ioctl)?;
    Ok(())
}

/// `make -C kdir M=build modules`; warnings are errors.
fn run_kbuild(kdir: &Path, build: &Path) -> Result<()> {
    if !kdir.join("Makefile").is_file() {
        bail!(
            "{} is not a kernel build directory (no Makefile)",
            kdir.display()
        );
    }
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    tracing::info!("building colinux.ko against {}", kdir.display());
    let out = Command::new("make")
        .arg("-C")
        .arg(kdir)
        .arg(format!("M={}", build.display()))
        .arg(format!("-j{jobs}"))
        // No BTF: it is generated against the kernel's vmlinux, which a
        // headers package does not have (Kbuild would say it skips it).
        .arg("CONFIG_DEBUG_INFO_BTF_MODULES=")
        .arg("modules")
        .output()
        .context("cannot run make")?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(build.join("build.log"), &log).ok();
    tracing::debug!("kbuild:\n{log}");
    if !out.status.success() {
        bail!("building colinux.ko failed ({}):\n{log}", out.status);
    }
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("warning"))
        .collect();
    if !warnings.is_empty() {
        bail!(
            "building colinux.ko gave warnings (fix them):\n{}\nfull log: {}",
            warnings.join("\n"),
            build.join("build.log").display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_header_lists_each_sides_functions() {
        let core = interface_functions("colinux_core_").expect("core functions");
        for f in [
            "colinux_core_create",
            "colinux_core_run_check",
            "colinux_core_set_state",
        ] {
            assert!(core.iter().any(|c| c == f), "{f} missing from {core:?}");
        }
        let shim = interface_functions("colinux_shim_").expect("shim functions");
        assert!(shim.iter().any(|c| c == "colinux_shim_memcpy"), "{shim:?}");
        // The panic handler's function is deliberately not declared.
        assert!(!shim.iter().any(|c| c == "colinux_shim_panic"), "{shim:?}");
        assert!(core.iter().chain(&shim).all(|f| !f.ends_with('_')));
    }

    #[test]
    fn parses_binutils_output() {
        let relocs = "\
RELOCATION RECORDS FOR [.text.colinux_core_create]:
OFFSET           TYPE              VALUE
0000000000000015 R_X86_64_PLT32    colinux_shim_log-0x0000000000000004
0000000000000020 R_X86_64_32S      .rodata..Lanon.1+0x0000000000000010
0000000000000030 R_X86_64_PLT32    memcpy-0x0000000000000004
";
        let syms = relocation_symbols(relocs);
        assert!(syms.contains("colinux_shim_log"));
        assert!(syms.contains("memcpy"));
        assert!(syms.contains(".rodata..Lanon.1"));
        let undefined =
            undefined_symbols("                 U __udivti3\n                 U memcpy\n");
        assert_eq!(
            undefined.difference(&syms).collect::<Vec<_>>(),
            vec!["__udivti3"]
        );
        assert!(is_indirect_branch(
            "     155:\tcall   *0x0(%rip)        # 15b <x+0x15b>"
        ));
        assert!(is_indirect_branch("      fa:\tjmp    *%rax"));
        assert!(!is_indirect_branch(
            "      fa:\tcall   1f0 <colinux_shim_log>"
        ));
    }
}
