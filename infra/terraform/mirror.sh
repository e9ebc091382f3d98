#!/bin/sh
# Lays out a terraform-provider-aerie binary as a Terraform filesystem mirror
# (the "unpacked" layout: HOSTNAME/NAMESPACE/TYPE/VERSION/OS_ARCH/ holding the
# executable) for the source address registry.terraform.io/aerie/aerie, so
# `terraform init` installs it with no registry reachable. `make
# terraform-mirror` and the provider's example test both run this script.
#
#   infra/terraform/mirror.sh PROVIDER_BINARY MIRROR_DIR [VERSION]
#
# VERSION defaults to the workspace's (Cargo.toml). Writes
# MIRROR_DIR/terraform.tfrc, a CLI config that takes aerie/aerie from the
# mirror and every other provider from its registry, and prints it.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 PROVIDER_BINARY MIRROR_DIR [VERSION]" >&2
    exit 2
fi
binary=$1
mirror=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
version=${3:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)}

if [ ! -x "$binary" ]; then
    echo "$binary is not an executable: build it first (cargo build -p terraform-provider-aerie)" >&2
    exit 1
fi
case "$version" in
    [0-9]*.[0-9]*.[0-9]*) ;;
    *) echo "version $version is not MAJOR.MINOR.PATCH, as Terraform needs" >&2; exit 1 ;;
esac

case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) echo "unsupported OS $(uname -s)" >&2; exit 1 ;;
esac
case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) echo "unsupported CPU $(uname -m)" >&2; exit 1 ;;
esac

mkdir -p "$mirror"
mirror=$(cd "$mirror" && pwd)
provider_dir="$mirror/registry.terraform.io/aerie/aerie"
# One version at a time: an older build left beside it would be the one a
# lock file pinned earlier, silently.
rm -rf "$provider_dir"
target="$provider_dir/$version/${os}_$arch"
mkdir -p "$target"
# A hard link where the mirror shares the build's filesystem (a debug build is
# large), a copy otherwise.
ln "$binary" "$target/terraform-provider-aerie_v$version" 2>/dev/null ||
    cp "$binary" "$target/terraform-provider-aerie_v$version"

cat > "$mirror/terraform.tfrc" <<TFRC
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/aerie/aerie"]
  }
  direct {
    exclude = ["registry.terraform.io/aerie/aerie"]
  }
}
TFRC

echo "terraform-provider-aerie $version (${os}_$arch) is in the filesystem mirror $mirror."
echo "Use it: export TF_CLI_CONFIG_FILE=$mirror/terraform.tfrc, or put these lines in ~/.terraformrc:"
echo
cat "$mirror/terraform.tfrc"
