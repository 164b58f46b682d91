# shellcheck shell=bash
# Shared by tests/deb/build.sh and repro.sh.

# Copies the checkout at $1 into $2: tracked files plus untracked ones git
# does not ignore (deleted files skipped); from an unpacked tarball,
# everything but build outputs.
copy_tree() {
	local repo=$1 dest=$2
	mkdir -p "$dest"
	if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git -C "$repo" ls-files -z --cached --others --exclude-standard |
			(cd "$repo" && while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
				tar --null -T - -cf -) | tar -C "$dest" -xf -
	else
		tar -C "$repo" --exclude=./build --exclude=./results --exclude=./.venv --exclude='*.o' --exclude='*.ko' \
			--exclude='*.egg-info' -cf - . | tar -C "$dest" -xf -
	fi
}
