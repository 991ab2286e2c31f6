#!/usr/bin/env bash
# Installs Autobahn|Testsuite's `wstest` into a private cache directory, once, and prints the
# path of the Python 2.7 launcher that runs it (run.sh calls this; you need not).
#
#   bash .ci/autobahn/install.sh      # → ~/.cache/wshd-autobahn-py27/python2.7
#
# wstest (PyPI autobahntestsuite) runs only on Python 2.7, which Debian bookworm does not ship.
# So the interpreter comes from Debian bullseye's .debs: downloaded with apt-get using a private
# state directory (the machine's own apt state and installed packages are never touched) from
# the Debian mirror this machine's apt already uses, and unpacked with `dpkg -x` into the cache.
# pip 20.3.4 (the last for Python 2) is bootstrapped from bullseye's python-pip-whl, then the
# exact package set of requirements.txt is installed from PyPI.
#
# A stamp holding the hash of this script and requirements.txt makes later runs skip all of it;
# editing either reinstalls. Needs apt-get and dpkg (any Debian), gcc and libc6-dev (wsaccel,
# ujson and Twisted compile C extensions) and python3 (run.sh's verdicts.py): the last three
# are installed from the machine's own Debian release when missing (as root).
#
# Environment: WSHD_AUTOBAHN_HOME   cache directory (default ~/.cache/wshd-autobahn-py27)
#              WSHD_AUTOBAHN_MIRROR Debian mirror URI holding bullseye (default: the one of
#                                   this machine's own release in its apt sources)
# Progress goes to stderr, the full log to $WSHD_AUTOBAHN_HOME/install.log.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${WSHD_AUTOBAHN_HOME:-${HOME:-/root}/.cache/wshd-autobahn-py27}"
PREFIX="$CACHE/root"            # the unpacked .debs: $PREFIX/usr/bin/python2.7, ...
LAUNCHER="$CACHE/python2.7"     # runs that interpreter with its libraries and a clean env
STAMP="$CACHE/installed"
LOG="$CACHE/install.log"
SUITE=bullseye
# The interpreter and stdlib, the headers for the C extensions, pip's wheel, and the three
# libraries whose sonames bookworm no longer has (OpenSSL 1.1, libffi 7) or may lack (expat).
DEBS=(python2.7 python2.7-minimal libpython2.7-minimal libpython2.7-stdlib libpython2.7-dev
    python-pip-whl libssl1.1 libffi7 libexpat1)
# Standard modules wstest loads; checked right after unpacking so a missing library is named
# then, not as an ImportError in the middle of a run.
MODULES="zlib ssl hashlib ctypes bz2 pyexpat json termios future_builtins"

log() { printf '[autobahn install] %s\n' "$*" >&2; }
die() {
    printf '[autobahn install] error: %s\n' "$*" >&2
    exit 2
}

# Runs "$@" with its output appended to the install log; on failure shows the log's tail.
logged() {
    if ! "$@" >>"$LOG" 2>&1; then
        tail -n 25 "$LOG" >&2
        die "failed: $* (full log: $LOG)"
    fi
}

fingerprint() {
    cat "$HERE/install.sh" "$HERE/requirements.txt" | sha256sum | cut -d' ' -f1
}

# gcc, libc6-dev and python3 from the machine's own Debian release, when missing.
install_system_tools() {
    local missing=()
    command -v gcc >/dev/null || missing+=(gcc)
    [[ -f /usr/include/stdio.h ]] || missing+=(libc6-dev)
    command -v python3 >/dev/null || missing+=(python3)
    ((${#missing[@]})) || return 0
    [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}: install them (apt-get install ${missing[*]})"
    log "installing ${missing[*]} (apt-get)"
    logged apt-get update
    logged env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# The URI of the mirror serving this machine's own Debian release (bullseye lives beside it),
# as apt itself parses the sources (one-line or deb822), without needing downloaded lists.
debian_mirror() {
    if [[ -n "${WSHD_AUTOBAHN_MIRROR:-}" ]]; then
        echo "$WSHD_AUTOBAHN_MIRROR"
        return
    fi
    local codename uri
    # shellcheck source=/dev/null
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    # shellcheck disable=SC2016 # $(RELEASE) and $(REPO_URI) are apt's placeholders, not shell
    uri="$(apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 'Identifier: Packages' |
        awk -v c="$codename" '$1 == c { print $2; exit }')"
    [[ -n "$uri" ]] || die "no apt source for '$codename' found: set WSHD_AUTOBAHN_MIRROR to a Debian mirror URI"
    echo "$uri"
}

# apt-get on a private sources list, state and cache under $CACHE/apt; it still reads the
# system's apt.conf.d (proxies), minus the hooks that would act on the system's caches.
private_apt() {
    local dir="$CACHE/apt" opts
    opts=(-c "$dir/apt.conf"
        -o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o Dir::State::status=/dev/null
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null)
    # apt downloads as the unprivileged _apt user, who cannot write into root's home.
    [[ "$(id -u)" == 0 ]] && opts+=(-o APT::Sandbox::User=root)
    apt-get "${opts[@]}" "$@"
}

download_debs() {
    local dir="$CACHE/apt" mirror
    mirror="$(debian_mirror)"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/debs"
    # bullseye is signed by keys every Debian's archive keyring holds, whatever the mirror.
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SUITE main" \
        >"$dir/sources.list"
    cat >"$dir/apt.conf" <<'EOF'
#clear APT::Update::Pre-Invoke;
#clear APT::Update::Post-Invoke;
#clear APT::Update::Post-Invoke-Success;
#clear Acquire::IndexTargets::deb::DEP-11;
#clear Acquire::IndexTargets::deb::DEP-11-icons-small;
#clear Acquire::IndexTargets::deb::DEP-11-icons;
#clear Acquire::IndexTargets::deb::DEP-11-icons-hidpi;
#clear Acquire::IndexTargets::deb::DEP-11-icons-large;
#clear Acquire::IndexTargets::deb::DEP-11-icons-large-hidpi;
#clear Acquire::IndexTargets::deb::Contents-deb;
Acquire::Languages "none";
EOF
    log "downloading ${DEBS[*]} from $mirror $SUITE"
    logged private_apt update
    (cd "$dir/debs" && logged private_apt download "${DEBS[@]}")
}

unpack_debs() {
    local deb
    for deb in "$CACHE"/apt/debs/*.deb; do
        dpkg -x "$deb" "$PREFIX"
    done
    [[ -x "$PREFIX/usr/bin/python2.7" ]] || die "no python2.7 in the unpacked packages"
}

# The launcher: the bullseye libraries first on the library path, and no Python setting of
# the caller's environment (PYTHONPATH, user site-packages) reaching the private interpreter.
write_launcher() {
    local triplet
    triplet="$(gcc -print-multiarch)" # x86_64-linux-gnu: where Debian puts the libraries
    cat >"$LAUNCHER" <<EOF
#!/bin/sh
# Generated by wshd's .ci/autobahn/install.sh: Debian bullseye's Python 2.7 unpacked here.
exec env -u PYTHONPATH -u PYTHONHOME -u PYTHONSTARTUP PYTHONNOUSERSITE=1 PYTHONIOENCODING=utf-8 \\
    LD_LIBRARY_PATH="$PREFIX/lib/$triplet:$PREFIX/usr/lib/$triplet\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \\
    "$PREFIX/usr/bin/python2.7" "\$@"
EOF
    chmod +x "$LAUNCHER"
    local mod
    for mod in $MODULES; do
        "$LAUNCHER" -c "import $mod" >>"$LOG" 2>&1 ||
            die "python2.7 cannot import $mod: $("$LAUNCHER" -c "import $mod" 2>&1 | tail -n1)"
    done
}

# pip from bullseye's wheel installs pip, setuptools and wheel (needed to build the sdists),
# then the pinned set without dependency resolution; `pip check` proves nothing is missing.
install_wstest() {
    local wheel pip_env bootstrap
    wheel="$(echo "$PREFIX"/usr/share/python-wheels/pip-*.whl)"
    [[ -f "$wheel" ]] || die "no pip wheel in python-pip-whl"
    # Debian's python2.7 names its compiler x86_64-linux-gnu-gcc; take plain gcc. CPATH: the
    # headers are in the prefix, not where the unpacked interpreter's distutils looks.
    pip_env=(env PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_NO_CACHE_DIR=1
        CC="gcc -pthread" LDSHARED="gcc -pthread -shared"
        CPATH="$PREFIX/usr/include/python2.7:$PREFIX/usr/include")
    log "installing $(grep -c '==' "$HERE/requirements.txt") pinned packages with pip (PyPI)"
    # A wheel file is a zip that Python can run; its top directory holds pip's __main__.
    mapfile -t bootstrap < <(grep -E '^(pip|setuptools|wheel)==' "$HERE/requirements.txt")
    logged "${pip_env[@]}" "$LAUNCHER" "$wheel/pip" install --no-deps --no-warn-script-location \
        "${bootstrap[@]}"
    logged "${pip_env[@]}" "$LAUNCHER" -m pip install --no-deps --no-warn-script-location \
        -r "$HERE/requirements.txt"
    logged "$LAUNCHER" -m pip check
    logged "$LAUNCHER" -c 'from autobahntestsuite import wstest, fuzzing; import wsaccel.utf8validator'
}

install() {
    local start=$SECONDS
    log "installing Python 2.7 ($SUITE) and wstest into $CACHE (once)"
    rm -rf "$PREFIX" "$CACHE/apt" "$STAMP" "$LAUNCHER"
    mkdir -p "$CACHE"
    : >"$LOG"
    install_system_tools
    download_debs
    unpack_debs
    write_launcher
    install_wstest
    rm -rf "$CACHE/apt"
    fingerprint >"$STAMP"
    log "installed in $((SECONDS - start)) s ($(du -sh "$CACHE" | cut -f1))"
}

main() {
    mkdir -p "$CACHE"
    # Two runs at once (two worktrees, two CI jobs) install one after the other; the second
    # then finds the stamp.
    exec 9>"$CACHE/lock"
    flock 9
    if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$(fingerprint)" ]]; then
        install
    fi
    echo "$LAUNCHER"
}

main "$@"
