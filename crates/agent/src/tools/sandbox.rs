//! The exec sandbox: what a program started by `exec` may touch, enforced by the kernel.
//!
//! On Linux the child process, between `fork` and `exec`:
//! 1. enters a new user namespace (mapping only its own uid and gid) and a new, empty network
//!    namespace, so it can reach nothing, loopback included, and whatever capabilities it has
//!    count only inside that namespace (root cannot set the clock or load modules);
//! 2. drops every capability and the bounding set, and sets `no_new_privs`, so neither root
//!    nor a setuid or file-capability program gains anything;
//! 3. confines itself with Landlock: read and execute in the system directories, read and write
//!    in the workspace and nowhere else (not the home directory, not the state directory, not
//!    `/proc`, not `/tmp`), no TCP bind or connect (Landlock ABI 4 and later), no abstract Unix
//!    sockets and no signals to processes outside the sandbox (ABI 6 and later).
//!
//! Which layers this kernel grants is found once by running the real sandbox on `true`
//! ([`status`]); `clawline doctor` and the gateway's start-up report it as it is.
//!
//! Must not: allocate, lock or log between `fork` and `exec` (the gateway is multi-threaded, so
//! only raw system calls on data prepared before the fork are safe there); claim a layer it
//! did not get.

use std::fmt;
use std::path::Path;

/// What the kernel grants the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// The Landlock ABI in force, when Landlock is available.
    pub landlock_abi: Option<i32>,
    /// Whether a program can be put in a network namespace of its own.
    pub network_namespace: bool,
    /// Whether that comes with a user namespace of its own (otherwise only root gets the
    /// network namespace, and its capabilities are dropped instead).
    pub user_namespace: bool,
}

impl Status {
    /// Whether files are confined (Landlock).
    pub fn files_confined(&self) -> bool {
        self.landlock_abi.is_some()
    }

    /// Whether the network is closed: a namespace of its own, or Landlock's TCP rules.
    pub fn network_closed(&self) -> bool {
        self.network_namespace || self.landlock_abi.is_some_and(|v| v >= 4)
    }

    /// Whether both files and network are contained.
    pub fn complete(&self) -> bool {
        self.files_confined() && self.network_closed()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.landlock_abi {
            Some(abi) => write!(f, "Landlock ABI {abi} (read-only system, writable workspace")?,
            None => write!(f, "no Landlock (files are not confined")?,
        }
        if self.landlock_abi.is_some_and(|v| v >= 4) {
            write!(f, ", no TCP")?;
        }
        write!(f, ")")?;
        if self.network_namespace && self.user_namespace {
            write!(f, ", private user and network namespaces")?;
        } else if self.network_namespace {
            write!(f, ", private network namespace")?;
        } else {
            write!(f, ", no network namespace")?;
        }
        Ok(())
    }
}

/// What this machine grants, found once by sandboxing `true`.
pub fn status() -> Status {
    static STATUS: std::sync::OnceLock<Status> = std::sync::OnceLock::new();
    *STATUS.get_or_init(probe)
}

#[cfg(target_os = "linux")]
fn probe() -> Status {
    let Some(truth) = ["/usr/bin/true", "/bin/true"].into_iter().map(Path::new).find(|p| p.is_file()) else {
        return Status::default();
    };
    let workspace = std::env::temp_dir();
    let try_with = |status: Status| -> bool {
        let Ok(plan) = linux::Plan::new(&workspace, status) else { return false };
        let mut cmd = std::process::Command::new(truth);
        cmd.env_clear().stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        plan.apply_std(&mut cmd);
        cmd.status().is_ok_and(|s| s.success())
    };
    let abi = linux::landlock_abi();
    let mut found = Status::default();
    if abi.is_some() && try_with(Status { landlock_abi: abi, ..Status::default() }) {
        found.landlock_abi = abi;
    }
    let namespaces = Status { network_namespace: true, user_namespace: true, landlock_abi: None };
    if try_with(namespaces) {
        (found.network_namespace, found.user_namespace) = (true, true);
    } else if try_with(Status { user_namespace: false, ..namespaces }) {
        found.network_namespace = true;
    }
    if found != Status::default() && !try_with(found) {
        // Each layer works alone but not together: keep the file confinement.
        (found.network_namespace, found.user_namespace) = (false, false);
    }
    found
}

#[cfg(not(target_os = "linux"))]
fn probe() -> Status {
    Status::default()
}

/// Puts the program `cmd` will start into the sandbox `status` allows, with `workspace`
/// writable. Fails when a layer that [`status`] reported cannot be prepared.
pub fn confine(cmd: &mut tokio::process::Command, workspace: &Path, status: Status) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let plan = linux::Plan::new(workspace, status)?;
        plan.apply(cmd);
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (cmd, workspace, status);
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::Status;

    const CREATE_RULESET: libc::c_long = 444;
    const ADD_RULE: libc::c_long = 445;
    const RESTRICT_SELF: libc::c_long = 446;
    const CREATE_RULESET_VERSION: u32 = 1;
    const RULE_PATH_BENEATH: libc::c_int = 1;

    const FS_EXECUTE: u64 = 1 << 0;
    const FS_WRITE_FILE: u64 = 1 << 1;
    const FS_READ_FILE: u64 = 1 << 2;
    const FS_READ_DIR: u64 = 1 << 3;
    const FS_TRUNCATE: u64 = 1 << 14;
    const FS_IOCTL_DEV: u64 = 1 << 15;
    const NET_BIND_TCP: u64 = 1 << 0;
    const NET_CONNECT_TCP: u64 = 1 << 1;
    const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
    const SCOPE_SIGNAL: u64 = 1 << 1;

    /// Directories a program may read and execute from.
    const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"];
    /// Devices a program may read and write.
    const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];

    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
        handled_access_net: u64,
        scoped: u64,
    }

    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }

    /// The Landlock ABI version the kernel offers, if any.
    pub(super) fn landlock_abi() -> Option<i32> {
        // SAFETY: the version query takes no pointer and creates nothing.
        let v =
            unsafe { libc::syscall(CREATE_RULESET, std::ptr::null::<RulesetAttr>(), 0usize, CREATE_RULESET_VERSION) };
        (v > 0).then_some(v as i32)
    }

    /// Every filesystem right a given ABI knows.
    fn fs_rights(abi: i32) -> u64 {
        let mut all = (1u64 << 13) - 1;
        if abi >= 2 {
            all |= 1 << 13; // REFER
        }
        if abi >= 3 {
            all |= FS_TRUNCATE;
        }
        if abi >= 5 {
            all |= FS_IOCTL_DEV;
        }
        all
    }

    /// Everything prepared before the fork; the child only makes system calls with it.
    pub(super) struct Plan {
        ruleset: Option<OwnedFd>,
        namespace: Option<Namespace>,
    }

    struct Namespace {
        user: bool,
        uid_map: Vec<u8>,
        gid_map: Vec<u8>,
    }

    impl Plan {
        pub(super) fn new(workspace: &Path, status: Status) -> std::io::Result<Plan> {
            let ruleset = match status.landlock_abi {
                Some(abi) => Some(ruleset(abi, workspace)?),
                None => None,
            };
            let namespace = status.network_namespace.then(|| {
                // SAFETY: getters without side effects.
                let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
                Namespace {
                    user: status.user_namespace,
                    uid_map: format!("{uid} {uid} 1\n").into_bytes(),
                    gid_map: format!("{gid} {gid} 1\n").into_bytes(),
                }
            });
            Ok(Plan { ruleset, namespace })
        }

        pub(super) fn apply(self, cmd: &mut tokio::process::Command) {
            // SAFETY: the closure makes only async-signal-safe system calls on memory that was
            // allocated before the fork and is not freed in the child.
            unsafe {
                cmd.pre_exec(move || self.enter());
            }
        }

        pub(super) fn apply_std(self, cmd: &mut std::process::Command) {
            use std::os::unix::process::CommandExt;
            // SAFETY: as in `apply`.
            unsafe {
                cmd.pre_exec(move || self.enter());
            }
        }

        /// Runs in the child, between fork and exec.
        fn enter(&self) -> std::io::Result<()> {
            if let Some(ns) = &self.namespace {
                ns.enter()?;
            }
            drop_capabilities()?;
            // SAFETY: prctl and the Landlock call take plain integers.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = &self.ruleset
                    && libc::syscall(RESTRICT_SELF, fd.as_raw_fd(), 0u32) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        }
    }

    impl Namespace {
        fn enter(&self) -> std::io::Result<()> {
            // SAFETY: unshare and the writes below use only memory prepared before the fork.
            unsafe {
                if !self.user {
                    if libc::unshare(libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    return Ok(());
                }
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &self.uid_map)?;
                write_file(c"/proc/self/gid_map", &self.gid_map)?;
            }
            Ok(())
        }
    }

    /// Empties the bounding set and the ambient, effective, permitted and inheritable sets, so
    /// the program starts with no capability even as root. Dropping from the bounding set needs
    /// CAP_SETPCAP: a process without it has nothing there to lose that `no_new_privs` does not
    /// already neutralize, so that failure is ignored.
    fn drop_capabilities() -> std::io::Result<()> {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        // SAFETY: prctl and capset take plain integers and pointers to the structs above.
        unsafe {
            for cap in 0..64 {
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
            let header = Header { version: VERSION_3, pid: 0 };
            let data = [
                Data { effective: 0, permitted: 0, inheritable: 0 },
                Data { effective: 0, permitted: 0, inheritable: 0 },
            ];
            if libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// open + write + close, safe between fork and exec.
    unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
        // SAFETY: `path` is NUL-terminated and `data` is valid for its length.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, data.as_ptr().cast(), data.len());
            libc::close(fd);
            if n != data.len() as isize {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// A Landlock ruleset: system directories read-only, devices, the workspace writable.
    fn ruleset(abi: i32, workspace: &Path) -> std::io::Result<OwnedFd> {
        let fs = fs_rights(abi);
        let attr = RulesetAttr {
            handled_access_fs: fs,
            handled_access_net: if abi >= 4 { NET_BIND_TCP | NET_CONNECT_TCP } else { 0 },
            scoped: if abi >= 6 { SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL } else { 0 },
        };
        // SAFETY: `attr` is a valid ruleset attribute of the size given; larger-than-known
        // sizes are accepted by older kernels when the extra fields are zero.
        let fd = unsafe {
            libc::syscall(CREATE_RULESET, &attr as *const RulesetAttr, std::mem::size_of::<RulesetAttr>(), 0u32)
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let read_exec = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;
        for dir in SYSTEM_DIRS {
            allow(&ruleset, Path::new(dir), read_exec, false)?;
        }
        for dev in DEVICES {
            allow(&ruleset, Path::new(dev), FS_READ_FILE | FS_WRITE_FILE, false)?;
        }
        allow(&ruleset, workspace, fs, true)?;
        Ok(ruleset)
    }

    /// Adds a rule for `path`; a missing optional path is skipped.
    fn allow(ruleset: &OwnedFd, path: &Path, access: u64, required: bool) -> std::io::Result<()> {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: `c` is NUL-terminated; O_PATH opens without reading.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return if required { Err(e) } else { Ok(()) };
        }
        // SAFETY: we own the descriptor just opened.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file_only = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;
        let access = if path.is_dir() { access } else { access & file_only };
        let rule = PathBeneathAttr { allowed_access: access, parent_fd: fd.as_raw_fd() };
        // SAFETY: `rule` is a valid path-beneath attribute and `ruleset` a ruleset descriptor.
        let r = unsafe {
            libc::syscall(ADD_RULE, ruleset.as_raw_fd(), RULE_PATH_BENEATH, &rule as *const PathBeneathAttr, 0u32)
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
