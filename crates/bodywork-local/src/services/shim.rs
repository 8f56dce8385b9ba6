//! The shim that makes unmodified service scripts behave as on Kubernetes.
//!
//! A module loaded through a `.pth` file in every stage environment:
//! - binds to the wildcard or localhost (`0.0.0.0`, `''`, `localhost`,
//!   `127.0.0.1`) are redirected to the replica's pod address
//!   (`BODYWORK_POD_ADDRESS`), so two replicas of a script that binds
//!   `0.0.0.0:5000` do not collide;
//! - service names (`NAME`, `NAME.NS`, `NAME.NS.svc`, `NAME.NS.svc.cluster.local`)
//!   resolve to the service's cluster address, read from the hosts file the
//!   daemon keeps (`BODYWORK_HOSTS_FILE`; short names for the stage's own
//!   namespace `BODYWORK_NAMESPACE`).
//!
//! - when `BODYWORK_MODULES_FILE` is set (a service under `workflow
//!   --watch`), the first socket a replica listens on records the modules
//!   it imported from the standard library and site-packages (never the
//!   project's) in that file, for the service's zygote to import ahead of
//!   its next rolls (see `super::zygote`).
//!
//! Without those variables (any other use of the environment) it does nothing.
//! With them, it patches `socket` when the program first imports it (an
//! import hook), not at start-up: most batch stages never open a socket, and
//! importing it costs an interpreter's start about 10 ms.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::files::write_if_changed;

pub const MODULE: &str = r#"# bodywork local-runtime shim: pod-address binds and service-name resolution.
import os as _os

_POD = _os.environ.get("BODYWORK_POD_ADDRESS")
_HOSTS = _os.environ.get("BODYWORK_HOSTS_FILE")
_NS = _os.environ.get("BODYWORK_NAMESPACE", "")


def _install(socket):
    if _POD:
        wildcard = {"", "0.0.0.0", "localhost", "127.0.0.1"}
        original_bind = socket.socket.bind

        def bind(self, address):
            if (
                self.family == socket.AF_INET
                and isinstance(address, tuple)
                and len(address) == 2
                and address[0] in wildcard
            ):
                address = (_POD, address[1])
            return original_bind(self, address)

        socket.socket.bind = bind

        original_listen = socket.socket.listen

        def listen(self, *args):
            result = original_listen(self, *args)
            _record_modules()
            return result

        socket.socket.listen = listen

    if _HOSTS:
        cache = {"stamp": None, "names": {}}

        def names():
            try:
                st = _os.stat(_HOSTS)
            except OSError:
                return {}
            stamp = (st.st_mtime_ns, st.st_size)
            if cache["stamp"] != stamp:
                table = {}
                try:
                    with open(_HOSTS, encoding="utf-8") as f:
                        for line in f:
                            parts = line.split()
                            if len(parts) != 3:
                                continue
                            ns, name, ip = parts
                            for alias in (name + "." + ns, name + "." + ns + ".svc", name + "." + ns + ".svc.cluster.local"):
                                table[alias] = ip
                            if ns == _NS:
                                table[name] = ip
                except OSError:
                    return cache["names"]
                cache["stamp"], cache["names"] = stamp, table
            return cache["names"]

        def lookup(host):
            if isinstance(host, bytes):
                host = host.decode("ascii", "replace")
            if not isinstance(host, str):
                return host
            return names().get(host.lower().rstrip("."), host)

        original_getaddrinfo = socket.getaddrinfo
        original_gethostbyname = socket.gethostbyname
        original_gethostbyname_ex = socket.gethostbyname_ex

        def getaddrinfo(host, *args, **kwargs):
            return original_getaddrinfo(lookup(host), *args, **kwargs)

        def gethostbyname(host):
            return original_gethostbyname(lookup(host))

        def gethostbyname_ex(host):
            return original_gethostbyname_ex(lookup(host))

        socket.getaddrinfo = getaddrinfo
        socket.gethostbyname = gethostbyname
        socket.gethostbyname_ex = gethostbyname_ex


def _refresh():
    """Read the variables again (a replica forked by a zygote, given its
    environment on "go")."""
    global _POD, _HOSTS, _NS
    _POD = _os.environ.get("BODYWORK_POD_ADDRESS")
    _HOSTS = _os.environ.get("BODYWORK_HOSTS_FILE")
    _NS = _os.environ.get("BODYWORK_NAMESPACE", "")


def _preloadable(modules, roots, project_dirs):
    """The names, in import order, of the modules in `modules` (a
    `sys.modules`) whose file lies under one of `roots` (the standard
    library, site-packages) and under none of `project_dirs`."""
    sep = _os.sep

    def under(dirs):
        out = set()
        for d in dirs:
            if d:
                for p in (_os.path.abspath(d), _os.path.realpath(d)):
                    out.add(p.rstrip(sep) + sep)
        return tuple(out)

    roots, project = under(roots), under(project_dirs)
    names = []
    for name, module in list(modules.items()):
        if name in ("__main__", "__mp_main__") or name.startswith("bodywork_shim"):
            continue
        path = getattr(module, "__file__", None)
        if not isinstance(path, str):
            continue
        path = _os.path.abspath(path)
        if path.startswith(project) or not path.startswith(roots):
            continue
        names.append(name)
    return names


_recorded = []


def _record_modules():
    """Once per process, when `BODYWORK_MODULES_FILE` asks for it: write the
    third-party and standard-library modules imported so far to that file
    (atomically), for the service's zygote to import."""
    path = _os.environ.get("BODYWORK_MODULES_FILE")
    if _recorded or not path:
        return
    _recorded.append(path)
    try:
        import sys
        import sysconfig

        paths = sysconfig.get_paths()
        roots = [paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")]
        main = getattr(sys.modules.get("__main__"), "__file__", None)
        project = [_os.getcwd(), sys.path[0] if sys.path else None]
        if isinstance(main, str):
            project.append(_os.path.dirname(_os.path.abspath(main)))
        names = _preloadable(sys.modules, roots, project)
        tmp = "%s.%d.tmp" % (path, _os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(n + "\n" for n in names))
        _os.replace(tmp, path)
    except Exception:
        pass


class _PatchSocketOnImport:
    """Patches `socket` once the program imports it: importing it here, in
    every interpreter's start-up, would cost each stage about 10 ms."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "socket":
            return None
        _sys.meta_path.remove(cls)
        for finder in _sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader:
    """`socket`'s own loader, which patches the module once it has run."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _install(module)


if _POD or _HOSTS:
    import sys as _sys

    if "socket" in _sys.modules:
        _install(_sys.modules["socket"])
    else:
        _sys.meta_path.insert(0, _PatchSocketOnImport)
"#;

/// Put the shim into an environment's site-packages (idempotent, atomic).
pub fn install(site_packages: &Path) -> std::io::Result<()> {
    write_if_changed(&site_packages.join("bodywork_shim.py"), MODULE)?;
    write_if_changed(
        &site_packages.join("bodywork_shim.pth"),
        "import bodywork_shim\n",
    )
}

/// The hosts file's text: one `NAMESPACE NAME CLUSTER-ADDRESS` line per service.
pub fn hosts_text<'a>(services: impl IntoIterator<Item = (&'a str, &'a str, Ipv4Addr)>) -> String {
    let mut lines: Vec<String> = services
        .into_iter()
        .map(|(ns, name, ip)| format!("{ns} {name} {ip}"))
        .collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Replace the hosts file atomically, so a reader never sees half of it.
pub fn write_hosts(path: &Path, text: &str) -> std::io::Result<()> {
    write_if_changed(path, text)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::process::Command;

    /// The Python on the PATH, if any (tests that need one pass without).
    /// The machine's python: these tests run it (panics without one).
    pub(in crate::services) fn python() -> String {
        ["python3", "python"]
            .into_iter()
            .find(|p| Command::new(p).arg("--version").output().is_ok())
            .map(String::from)
            .expect("no python3 or python on PATH: these tests run it")
    }

    #[test]
    fn hosts_lines_are_sorted() {
        let text = hosts_text([
            ("ns", "b", Ipv4Addr::new(127, 10, 0, 2)),
            ("ns", "a", Ipv4Addr::new(127, 10, 0, 1)),
        ]);
        assert_eq!(text, "ns a 127.10.0.1\nns b 127.10.0.2\n");
    }

    /// The lines `script` prints, run by a real interpreter with the shim
    /// importable, a hosts file naming `ml/proj--serve`, and `pod` as the
    /// pod address if any.
    fn run_with_shim(script: &str, pod: Option<&str>) -> Vec<String> {
        let py = python();
        let dir = tempfile::tempdir().unwrap();
        install(dir.path()).unwrap();
        let hosts = dir.path().join("hosts");
        write_hosts(
            &hosts,
            &hosts_text([("ml", "proj--serve", Ipv4Addr::new(127, 10, 0, 9))]),
        )
        .unwrap();
        let mut cmd = Command::new(py);
        cmd.arg("-c")
            .arg(script)
            .env("PYTHONPATH", dir.path())
            .env("BODYWORK_HOSTS_FILE", &hosts)
            .env("BODYWORK_NAMESPACE", "ml");
        if let Some(pod) = pod {
            cmd.env("BODYWORK_POD_ADDRESS", pod);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout.lines().map(String::from).collect()
    }

    /// Loaded first, as the `.pth` file loads it, the shim does not import
    /// `socket` (start-up stays fast), and patches it once the program does.
    #[test]
    fn shim_patches_socket_when_the_program_imports_it() {
        let script = r#"
import sys, bodywork_shim
print("socket" in sys.modules)
from socket import getaddrinfo, AF_INET
import socket
print(socket.getaddrinfo("proj--serve", 5000, AF_INET)[0][4][0])
print(getaddrinfo("proj--serve", 5000, AF_INET)[0][4][0])
print(socket.__spec__.name, bodywork_shim._PatchSocketOnImport in sys.meta_path)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("0.0.0.0", 0))
print(s.getsockname()[0])
"#;
        let lines = run_with_shim(script, Some("127.10.128.7"));
        assert_eq!(
            lines,
            [
                "False",
                "127.10.0.9",
                "127.10.0.9",
                "socket False",
                "127.10.128.7"
            ]
        );
    }

    /// The shim, loaded into a real interpreter after `socket`: a wildcard
    /// bind lands on the pod address and service names resolve through the
    /// hosts file.
    #[test]
    fn shim_redirects_binds_and_resolves_names() {
        let script = r#"
import socket, bodywork_shim
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("0.0.0.0", 0))
print(s.getsockname()[0])
for name in ["proj--serve", "proj--serve.ml", "proj--serve.ml.svc.cluster.local", "localhost"]:
    print(name, socket.getaddrinfo(name, 5000, socket.AF_INET)[0][4][0])
print(socket.gethostbyname("PROJ--SERVE.ml."))
"#;
        let lines = run_with_shim(script, Some("127.10.128.7"));
        assert_eq!(
            lines,
            [
                "127.10.128.7",
                "proj--serve 127.10.0.9",
                "proj--serve.ml 127.10.0.9",
                "proj--serve.ml.svc.cluster.local 127.10.0.9",
                "localhost 127.0.0.1",
                "127.10.0.9"
            ]
        );
    }

    /// The modules a zygote pre-imports: the standard library's and
    /// site-packages', never the project's (in the order their imports
    /// ended, which imports each after what it needs).
    #[test]
    fn modules_to_preload_are_stdlib_and_site_packages_never_the_project() {
        let py = python();
        let dir = tempfile::tempdir().unwrap();
        install(dir.path()).unwrap();
        let (site, project) = (dir.path().join("site"), dir.path().join("project"));
        for (d, m) in [(&site, "thirdparty"), (&project, "own_helpers")] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join(format!("{m}.py")), "X = 1\n").unwrap();
        }
        // A project nested in site-packages is still the project.
        let nested = site.join("nested_project");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(nested.join("nested_own.py"), "").unwrap();
        let script = r#"
import sys, sysconfig, json, thirdparty, own_helpers, nested_own, bodywork_shim
site, project, nested = sys.argv[1:4]
stdlib = sysconfig.get_paths()["stdlib"]
names = bodywork_shim._preloadable(sys.modules, [stdlib, site], [project, nested])
for n in ["json", "json.decoder", "thirdparty", "own_helpers", "nested_own", "bodywork_shim", "__main__", "sys"]:
    print(n, n in names)
"#;
        let path = std::env::join_paths([dir.path(), &site, &project, &nested]).unwrap();
        let out = Command::new(py)
            .arg("-c")
            .arg(script)
            .args([&site, &project, &nested])
            .env("PYTHONPATH", path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            [
                "json True",
                "json.decoder True",
                "thirdparty True",
                "own_helpers False",
                "nested_own False",
                "bodywork_shim False",
                "__main__ False",
                "sys False",
            ]
        );
    }

    /// With `BODYWORK_MODULES_FILE`, the first listening socket writes the
    /// list; the project's own modules (from the working directory) are
    /// left out.
    #[test]
    fn the_first_listen_records_the_modules_when_asked() {
        let py = python();
        let dir = tempfile::tempdir().unwrap();
        install(dir.path()).unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("own_helpers.py"), "").unwrap();
        let modules = dir.path().join("modules");
        let script = r#"
import bodywork_shim, json, own_helpers, socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
s.listen()
"#;
        let run = |record: bool| {
            let mut cmd = Command::new(&py);
            cmd.arg("-c")
                .arg(script)
                .current_dir(&project)
                .env("PYTHONPATH", dir.path())
                .env("BODYWORK_POD_ADDRESS", "127.0.0.1");
            if record {
                cmd.env("BODYWORK_MODULES_FILE", &modules);
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(false);
        assert!(!modules.exists());
        run(true);
        let text = std::fs::read_to_string(&modules).unwrap();
        let names: Vec<&str> = text.lines().collect();
        assert!(
            names.contains(&"json") && names.contains(&"socket"),
            "{names:?}"
        );
        assert!(!names.contains(&"own_helpers"), "{names:?}");
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
