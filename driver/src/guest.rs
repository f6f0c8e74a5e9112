//! A guest: its RAM as host pages, and the ioctls that act on it.
//!
//! Guest RAM is not one contiguous host block: it is `memory_size / 4096`
//! independent host pages, wherever the host allocator found them, and a
//! table maps each guest page frame number (pfn, the index) to its host
//! frame (the value). The guest will translate with that table (Xen PV's
//! pfn-to-mfn); see `driver/README.md` for the reasons.
//!
//! Every function here validates its input completely before acting, never
//! panics, and leaves the guest as it was when it fails (except for the
//! bytes a failed LOAD already copied). Callers serialise calls on one
//! [`Slot`] (the shim holds the file's mutex).

use core::mem::size_of;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use colinux_abi::{
    cooperative_ioctl_create, cooperative_ioctl_info, cooperative_ioctl_load,
    COOPERATIVE_ABI_VERSION, COOPERATIVE_GUEST_STATE_CREATED, COOPERATIVE_GUEST_STATE_DEAD,
    COOPERATIVE_GUEST_STATE_NONE, COOPERATIVE_MAX_MEMORY_SIZE, COOPERATIVE_MIN_MEMORY_SIZE,
    COOPERATIVE_PAGE_SHIFT, COOPERATIVE_PAGE_SIZE,
};

use crate::host::{Errno, Host, Level};
use crate::msg::Msg;

/// Bytes in a page (guest and host: x86 base pages).
pub const PAGE_SIZE: u64 = COOPERATIVE_PAGE_SIZE as u64;
const PAGE_MASK: u64 = PAGE_SIZE - 1;
/// Host frames below this are below 4 GiB host-physical.
pub const FRAMES_BELOW_4G: u64 = 1 << (32 - COOPERATIVE_PAGE_SHIFT);
/// Smallest and largest guest RAM, in bytes (bindgen types them u32).
pub const MIN_MEMORY: u64 = COOPERATIVE_MIN_MEMORY_SIZE as u64;
/// See [`MIN_MEMORY`].
pub const MAX_MEMORY: u64 = COOPERATIVE_MAX_MEMORY_SIZE as u64;
/// The guest id used in log messages about no guest in particular.
pub const NO_GUEST: u32 = u32::MAX;

/// The next guest id. Ids are never reused while the module is loaded (until
/// the counter wraps), so log lines about different guests differ.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// One guest: its RAM and what has been loaded into it.
#[derive(Debug)]
pub struct Guest {
    id: u32,
    memory_size: u64,
    /// `nr_pages` host frame numbers, indexed by guest pfn.
    frames: NonNull<u64>,
    nr_pages: usize,
    pages_below_4g: u64,
    lowest_frame: u64,
    highest_frame: u64,
    loaded_bytes: u64,
    loads: u32,
    /// `COOPERATIVE_GUEST_STATE_CREATED`, `_RUNNING` or `_DEAD` (see
    /// [`crate::run::set_state`]).
    state: u32,
}

// The shim's allocator guarantees 8-byte alignment.
const _: () = assert!(core::mem::align_of::<Guest>() <= 8);

impl Guest {
    /// This guest's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Bytes of guest RAM.
    pub fn memory_size(&self) -> u64 {
        self.memory_size
    }

    /// Where the guest is in its life (`COOPERATIVE_GUEST_STATE_*`).
    pub fn state(&self) -> u32 {
        self.state
    }

    pub(crate) fn set_state(&mut self, state: u32) {
        self.state = state;
    }

    /// The host frame of every guest page, by guest pfn.
    pub fn frames(&self) -> &[u64] {
        // SAFETY: `frames` points to `nr_pages` initialised u64s that this
        // guest owns for its whole life (allocated in `create`, freed only in
        // `free_guest` after the last use).
        unsafe { core::slice::from_raw_parts(self.frames.as_ptr(), self.nr_pages) }
    }
}

/// The guest slot of one open file: empty, or owning one guest. The C shim
/// holds it as `struct colinux_guest *` (same layout) in its per-file state.
#[derive(Debug, Default)]
#[repr(transparent)]
pub struct Slot(Option<NonNull<Guest>>);

impl Slot {
    /// An empty slot.
    pub const fn empty() -> Slot {
        Slot(None)
    }

    /// The guest, if there is one.
    pub fn guest(&self) -> Option<&Guest> {
        // SAFETY: a non-empty slot owns a live, initialised `Guest` (written
        // in `create`, freed only by `destroy`, which empties the slot), and
        // the borrow of the slot keeps it from being destroyed meanwhile.
        self.0.map(|g| unsafe { g.as_ref() })
    }

    pub(crate) fn guest_mut(&mut self) -> Option<&mut Guest> {
        // SAFETY: as in `guest`; `&mut self` makes the access exclusive.
        self.0.map(|mut g| unsafe { g.as_mut() })
    }
}

fn warn<H: Host>(host: &mut H, guest: u32, m: Msg) {
    host.log(Level::Warn, guest, m.as_bytes());
}

fn errno_name(e: Errno) -> &'static str {
    match e {
        Errno::EINTR => "interrupted by a fatal signal",
        Errno::ENOMEM => "out of memory",
        Errno::EFAULT => "bad daemon address",
        _ => "error",
    }
}

/// CREATE: validate `arg`, allocate `memory_size` bytes of guest RAM as host
/// pages and put the new guest in `slot`. `max_pages` is the most the host
/// may give (the shim passes what its host-wide limit leaves: half of the
/// RAM below 4 GiB, where guest RAM comes from, less the other guests').
/// Returns the guest's id.
pub fn create<H: Host>(
    host: &mut H,
    slot: &mut Slot,
    arg: &cooperative_ioctl_create,
    max_pages: u64,
) -> Result<u32, Errno> {
    if arg.abi_version != COOPERATIVE_ABI_VERSION {
        warn(
            host,
            NO_GUEST,
            Msg::new()
                .s("CREATE: the daemon speaks ABI version ")
                .u(arg.abi_version.into())
                .s(", this driver ")
                .u(COOPERATIVE_ABI_VERSION.into()),
        );
        return Err(Errno::EPROTO);
    }
    if arg.flags != 0 || arg.reserved.iter().any(|&r| r != 0) {
        warn(
            host,
            NO_GUEST,
            Msg::new().s("CREATE: unknown flags or nonzero reserved fields"),
        );
        return Err(Errno::EINVAL);
    }
    if let Some(g) = slot.guest() {
        let id = g.id;
        warn(
            host,
            id,
            Msg::new().s("CREATE: this file already has a guest"),
        );
        return Err(Errno::EBUSY);
    }
    let size = arg.memory_size;
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&size) || size & PAGE_MASK != 0 {
        warn(
            host,
            NO_GUEST,
            Msg::new()
                .s("CREATE of ")
                .bytes(size)
                .s(" refused: guest RAM must be a multiple of 4096 bytes from ")
                .bytes(MIN_MEMORY)
                .s(" to ")
                .bytes(MAX_MEMORY),
        );
        return Err(Errno::EINVAL);
    }
    let pages = size / PAGE_SIZE;
    if pages > max_pages {
        warn(
            host,
            NO_GUEST,
            Msg::new()
                .s("CREATE of ")
                .bytes(size)
                .s(" refused: more than the host-wide limit for guest RAM leaves (")
                .bytes(max_pages.saturating_mul(PAGE_SIZE))
                .s(" left: half of the host's RAM below 4 GiB, less other guests)"),
        );
        return Err(Errno::ENOMEM);
    }
    // Both fit: pages <= 3 GiB / 4 KiB.
    let nr_pages = pages as usize;
    let table_size = nr_pages * size_of::<u64>();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);

    let Some(frames) = host.alloc(table_size) else {
        warn(
            host,
            id,
            Msg::new()
                .s("CREATE of ")
                .bytes(size)
                .s(": no memory for the frame table of ")
                .u(table_size as u64)
                .s(" bytes"),
        );
        return Err(Errno::ENOMEM);
    };
    let frames = frames.cast::<u64>();
    let Some(raw) = host.alloc(size_of::<Guest>()) else {
        host.free(frames.cast(), table_size);
        warn(host, id, Msg::new().s("CREATE: no memory for the guest"));
        return Err(Errno::ENOMEM);
    };
    let guest_ptr = raw.cast::<Guest>();

    let mut lowest = u64::MAX;
    let mut highest = 0;
    let mut below_4g = 0;
    for i in 0..nr_pages {
        match host.alloc_page() {
            Ok(frame) => {
                // SAFETY: `frames` holds `nr_pages` u64s and `i < nr_pages`.
                unsafe { frames.as_ptr().add(i).write(frame) };
                lowest = lowest.min(frame);
                highest = highest.max(frame);
                if frame < FRAMES_BELOW_4G {
                    below_4g += 1;
                }
            }
            Err(e) => {
                for j in 0..i {
                    // SAFETY: entries 0..i were written above.
                    let frame = unsafe { frames.as_ptr().add(j).read() };
                    host.free_page(frame);
                }
                host.free(raw, size_of::<Guest>());
                host.free(frames.cast(), table_size);
                let level = if e == Errno::EINTR {
                    Level::Info
                } else {
                    Level::Warn
                };
                host.log(
                    level,
                    id,
                    Msg::new()
                        .s("CREATE of ")
                        .bytes(size)
                        .s(" failed after ")
                        .u(i as u64)
                        .s(" of ")
                        .u(pages)
                        .s(" pages (")
                        .s(errno_name(e))
                        .s("); all freed")
                        .as_bytes(),
                );
                return Err(e);
            }
        }
    }
    let guest = Guest {
        id,
        memory_size: size,
        frames,
        nr_pages,
        pages_below_4g: below_4g,
        lowest_frame: lowest,
        highest_frame: highest,
        loaded_bytes: 0,
        loads: 0,
        state: COOPERATIVE_GUEST_STATE_CREATED,
    };
    // SAFETY: `raw` is a fresh allocation of size_of::<Guest>() bytes,
    // aligned to 8 (enough, checked above), owned by nobody else.
    unsafe { guest_ptr.as_ptr().write(guest) };
    slot.0 = Some(guest_ptr);
    host.log(
        Level::Info,
        id,
        Msg::new()
            .s("created: ")
            .bytes(size)
            .s(" of RAM in ")
            .u(pages)
            .s(" host pages, ")
            .u(below_4g)
            .s(" below 4 GiB, frames ")
            .x(lowest)
            .s("..")
            .x(highest)
            .as_bytes(),
    );
    Ok(id)
}

/// Walk `len` bytes of guest RAM from `start` (already checked to lie inside
/// RAM of `frames`) page by page: `f(frame, offset in page, bytes, bytes
/// done before)`.
fn for_each_page(
    frames: &[u64],
    start: u64,
    len: u64,
    mut f: impl FnMut(u64, usize, usize, u64) -> Result<(), Errno>,
) -> Result<(), Errno> {
    let mut done = 0u64;
    while done < len {
        let addr = start + done;
        let offset = addr & PAGE_MASK;
        let chunk = (PAGE_SIZE - offset).min(len - done);
        let frame = usize::try_from(addr >> COOPERATIVE_PAGE_SHIFT)
            .ok()
            .and_then(|pfn| frames.get(pfn))
            .copied()
            .ok_or(Errno::EINVAL)?;
        // Both are at most PAGE_SIZE.
        f(frame, offset as usize, chunk as usize, done)?;
        done += chunk;
    }
    Ok(())
}

/// LOAD: copy `arg.size` bytes from the daemon's `arg.user_address` to
/// guest-physical `arg.guest_address`, then zero `arg.zero_size` bytes after
/// them. The whole range must lie inside guest RAM.
pub fn load<H: Host>(
    host: &mut H,
    slot: &mut Slot,
    arg: &cooperative_ioctl_load,
) -> Result<(), Errno> {
    if arg.abi_version != COOPERATIVE_ABI_VERSION {
        return Err(Errno::EPROTO);
    }
    if arg.flags != 0 || arg.reserved.iter().any(|&r| r != 0) {
        return Err(Errno::EINVAL);
    }
    let Some(guest) = slot.guest_mut() else {
        warn(host, NO_GUEST, Msg::new().s("LOAD: no guest on this file"));
        return Err(Errno::EINVAL);
    };
    let id = guest.id;
    if guest.state != COOPERATIVE_GUEST_STATE_CREATED {
        warn(
            host,
            id,
            Msg::new().s(if guest.state == COOPERATIVE_GUEST_STATE_DEAD {
                "LOAD refused: the guest has ended; its RAM is not rewritten"
            } else {
                "LOAD refused: the guest is running; its RAM is not rewritten"
            }),
        );
        return Err(Errno::EBUSY);
    }
    let end = arg
        .guest_address
        .checked_add(arg.size)
        .and_then(|e| e.checked_add(arg.zero_size));
    if end.is_none_or(|end| end > guest.memory_size) {
        warn(
            host,
            id,
            Msg::new()
                .s("LOAD refused: ")
                .u(arg.size)
                .s(" bytes + ")
                .u(arg.zero_size)
                .s(" zeroed at guest-physical ")
                .x(arg.guest_address)
                .s(" do not fit in ")
                .bytes(guest.memory_size)
                .s(" of RAM"),
        );
        return Err(Errno::EINVAL);
    }
    if arg.user_address.checked_add(arg.size).is_none() {
        warn(
            host,
            id,
            Msg::new()
                .s("LOAD refused: daemon buffer at ")
                .x(arg.user_address)
                .s(" wraps around"),
        );
        return Err(Errno::EFAULT);
    }
    let frames = guest.frames();
    let copied = for_each_page(
        frames,
        arg.guest_address,
        arg.size,
        |frame, off, n, done| host.copy_from_user(frame, off, arg.user_address + done, n),
    );
    let zeroed = copied.and_then(|()| {
        for_each_page(
            frames,
            arg.guest_address + arg.size,
            arg.zero_size,
            |frame, off, n, _| host.zero(frame, off, n),
        )
    });
    if let Err(e) = zeroed {
        if e != Errno::EINTR {
            warn(
                host,
                id,
                Msg::new()
                    .s("LOAD of ")
                    .u(arg.size)
                    .s(" bytes from ")
                    .x(arg.user_address)
                    .s(" to guest-physical ")
                    .x(arg.guest_address)
                    .s(" failed: ")
                    .s(errno_name(e)),
            );
        }
        return Err(e);
    }
    guest.loads = guest.loads.saturating_add(1);
    guest.loaded_bytes = guest.loaded_bytes.saturating_add(arg.size);
    Ok(())
}

/// INFO: describe the slot's guest (state NONE when there is none).
pub fn info(slot: &Slot, arg: &mut cooperative_ioctl_info) -> Result<(), Errno> {
    if arg.abi_version != COOPERATIVE_ABI_VERSION {
        return Err(Errno::EPROTO);
    }
    if arg.reserved.iter().any(|&r| r != 0) {
        return Err(Errno::EINVAL);
    }
    *arg = match slot.guest() {
        None => cooperative_ioctl_info {
            abi_version: COOPERATIVE_ABI_VERSION,
            state: COOPERATIVE_GUEST_STATE_NONE,
            ..Default::default()
        },
        Some(g) => cooperative_ioctl_info {
            abi_version: COOPERATIVE_ABI_VERSION,
            guest_id: g.id,
            memory_size: g.memory_size,
            pages: g.nr_pages as u64,
            pages_below_4g: g.pages_below_4g,
            lowest_frame: g.lowest_frame,
            highest_frame: g.highest_frame,
            loaded_bytes: g.loaded_bytes,
            loads: g.loads,
            state: g.state,
            reserved: [0; 4],
        },
    };
    Ok(())
}

/// DESTROY (and closing the file): free every page of the slot's guest, its
/// table and itself, and empty the slot. `EINVAL` when there is no guest.
pub fn destroy<H: Host>(host: &mut H, slot: &mut Slot) -> Result<(), Errno> {
    let Some(ptr) = slot.0.take() else {
        return Err(Errno::EINVAL);
    };
    // SAFETY: the slot owned this initialised guest; taking it out of the
    // slot makes us its only owner, and we read it out exactly once.
    let guest = unsafe { ptr.as_ptr().read() };
    for &frame in guest.frames() {
        host.free_page(frame);
    }
    host.free(guest.frames.cast(), guest.nr_pages * size_of::<u64>());
    host.free(ptr.cast(), size_of::<Guest>());
    host.log(
        Level::Info,
        guest.id,
        Msg::new()
            .s("destroyed: ")
            .u(guest.nr_pages as u64)
            .s(" host pages freed")
            .as_bytes(),
    );
    Ok(())
}

#[cfg(test)]
mod tests;
