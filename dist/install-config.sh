#!/bin/sh
# meson install script: install-config.sh SOURCE DEST
# Puts SOURCE at DESTDIR/DEST unless something is already there: an
# operator's configuration is never overwritten by a reinstall.
set -eu
src=$1
dest=${DESTDIR:-}$2
if [ -n "${MESON_INSTALL_DRY_RUN:-}" ]; then
	echo "Would install $src to $dest (unless it exists)"
elif [ -e "$dest" ]; then
	echo "Keeping $dest (exists)"
else
	install -D -m 0644 "$src" "$dest"
	echo "Installing $src to $dest"
fi
