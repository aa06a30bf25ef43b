#!/usr/bin/env bash
# The build baseline: the same work as the service's pipeline (src/image/uki.ts, iso.ts) done by hand
# with the plain tools: overlay cpio, initramfs concatenation, UKI with objcopy, GRUB + FAT image + ISO
# with grub-mkimage, mtools and xorriso, and the outputs fsynced (the service publishes durably too).
#
# Usage: baseline-build.sh KERNEL BASE_INITRAMFS CMDLINE OVERLAY_TREE OUT_DIR
#   writes OUT_DIR/uki.efi and OUT_DIR/boot.iso (amd64).
set -euo pipefail
[ $# -eq 5 ] || { echo "usage: $0 KERNEL BASE_INITRAMFS CMDLINE OVERLAY_TREE OUT_DIR" >&2; exit 2; }
kernel=$1 base=$2 cmdline=$3 tree=$4 out=$5

stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
objcopy=x86_64-linux-gnu-objcopy
grub_dir=/usr/lib/grub/x86_64-efi
volid=UOD_BASELINE_$(date +%s%N | tail -c 9)
export SOURCE_DATE_EPOCH=946684800

mkdir -p "$out"
work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT

# 1. Overlay: gzip'd newc cpio of the tree (every parent directory included), owned by root.
(cd "$tree" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
  | gzip -n > "$work/overlay.cpio.gz"

# 2. initramfs = base ‖ zero padding to a multiple of 4 bytes ‖ overlay.
cp "$base" "$work/initramfs.img"
size=$(stat -c %s "$work/initramfs.img")
head -c $(( (4 - size % 4) % 4 )) /dev/zero >> "$work/initramfs.img"
cat "$work/overlay.cpio.gz" >> "$work/initramfs.img"

# 3. UKI: .osrel .cmdline .initrd .linux after everything the stub maps, each on SectionAlignment.
printf 'NAME="uki-on-demand"\nID=uki-on-demand\nPRETTY_NAME="baseline"\n' > "$work/osrel"
printf '%s' "$cmdline" > "$work/cmdline"
image_base=0 align=0 end=0
while read -r key value; do
  case $key in
    ImageBase) image_base=$((16#$value)) ;;
    SectionAlignment) align=$((16#$value)) ;;
    SizeOfImage) end=$((16#$value)) ;;
  esac
done < <(objdump -p "$stub")
while read -r idx name sz vma _; do
  [[ $idx =~ ^[0-9]+$ ]] || continue
  e=$(( 16#$vma - image_base + 16#$sz ))
  (( e > end )) && end=$e
done < <(objdump -h "$stub")
align_up() { echo $(( ($1 + align - 1) / align * align )); }
osrel_at=$(align_up "$end")
cmdline_at=$(align_up $(( osrel_at + $(stat -c %s "$work/osrel") )))
initrd_at=$(align_up $(( cmdline_at + $(stat -c %s "$work/cmdline") )))
linux_at=$(align_up $(( initrd_at + $(stat -c %s "$work/initramfs.img") )))
hex() { printf '0x%x' $(( image_base + $1 )); }
"$objcopy" \
  --add-section .osrel="$work/osrel" --change-section-vma .osrel="$(hex "$osrel_at")" --set-section-flags .osrel=data,readonly \
  --add-section .cmdline="$work/cmdline" --change-section-vma .cmdline="$(hex "$cmdline_at")" --set-section-flags .cmdline=data,readonly \
  --add-section .initrd="$work/initramfs.img" --change-section-vma .initrd="$(hex "$initrd_at")" --set-section-flags .initrd=data,readonly \
  --add-section .linux="$kernel" --change-section-vma .linux="$(hex "$linux_at")" --set-section-flags .linux=code,readonly \
  "$stub" "$out/uki.efi"
rm -f "$work/initramfs.img"

# 4. ISO: GRUB with an embedded script that finds this volume and chainloads the UKI, in a FAT image
#    that is both the El Torito EFI image and the ESP; xorriso packs the tree.
mkdir -p "$work/tree"
printf 'search --no-floppy --set=root --file /EFI/uki-on-demand/%s\nchainloader /EFI/Linux/uki.efi\nboot\n' "$volid" > "$work/grub.cfg"
grub-mkimage -O x86_64-efi -d "$grub_dir" -p /EFI/BOOT -c "$work/grub.cfg" -o "$work/BOOTX64.EFI" \
  fat iso9660 part_gpt part_msdos search search_fs_file chain boot
loader_size=$(stat -c %s "$work/BOOTX64.EFI")
sectors=$(( (loader_size + 65536 + 65535) / 65536 * 128 ))
mformat -C -i "$work/efiboot.img" -T "$sectors" -h 2 -s 32 -N 0 -v UKIBOOT ::
mmd -i "$work/efiboot.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/efiboot.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
echo "$volid" > "$work/marker"
xorriso -stdio_sync off -volume_date all_file_dates "=$SOURCE_DATE_EPOCH" \
  -as mkisofs -quiet -iso-level 3 -R -V "$volid" -graft-points \
  -e /EFI/uki-on-demand/efiboot.img -no-emul-boot -efi-boot-part --efi-boot-image \
  --sort-weight -1 /EFI/Linux/uki.efi \
  -o "$out/boot.iso" \
  "/EFI/uki-on-demand/efiboot.img=$work/efiboot.img" \
  "/EFI/uki-on-demand/$volid=$work/marker" \
  "/EFI/Linux/uki.efi=$out/uki.efi"

# 5. Durable outputs.
sync "$out/uki.efi" "$out/boot.iso"
