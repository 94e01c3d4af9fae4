#pragma once

// libarchive, loaded on first use rather than linked: its dependencies (libxml2, ICU, ...) cost
// every gpurun process milliseconds of dynamic linking, and most commands never touch a layer.

#include <archive.h>
#include <archive_entry.h>

#include <string>

namespace gpurun::cloud::libarchive {

#define GPURUN_LIBARCHIVE_FUNCTIONS(X) \
  X(archive_entry_clear) \
  X(archive_entry_filetype) \
  X(archive_entry_free) \
  X(archive_entry_hardlink) \
  X(archive_entry_new) \
  X(archive_entry_pathname) \
  X(archive_entry_perm) \
  X(archive_entry_set_filetype) \
  X(archive_entry_set_gid) \
  X(archive_entry_set_hardlink) \
  X(archive_entry_set_mtime) \
  X(archive_entry_set_pathname) \
  X(archive_entry_set_perm) \
  X(archive_entry_set_size) \
  X(archive_entry_set_symlink) \
  X(archive_entry_set_uid) \
  X(archive_entry_size) \
  X(archive_error_string) \
  X(archive_read_data_block) \
  X(archive_read_free) \
  X(archive_read_new) \
  X(archive_read_next_header) \
  X(archive_read_open_filename) \
  X(archive_read_support_filter_all) \
  X(archive_read_support_format_tar) \
  X(archive_write_close) \
  X(archive_write_data) \
  X(archive_write_data_block) \
  X(archive_write_disk_new) \
  X(archive_write_disk_set_options) \
  X(archive_write_disk_set_standard_lookup) \
  X(archive_write_finish_entry) \
  X(archive_write_free) \
  X(archive_write_header) \
  X(archive_write_new) \
  X(archive_write_open) \
  X(archive_write_set_bytes_in_last_block) \
  X(archive_write_set_bytes_per_block) \
  X(archive_write_set_format_pax_restricted)

struct Api {
  std::string error;  // why libarchive could not be loaded; empty when it was
#define GPURUN_LIBARCHIVE_MEMBER(name) decltype(&::name) name = nullptr;
  GPURUN_LIBARCHIVE_FUNCTIONS(GPURUN_LIBARCHIVE_MEMBER)
#undef GPURUN_LIBARCHIVE_MEMBER
};

// The functions, loaded from libarchive.so.13 on the first call; check `error` before use.
const Api& api();

}  // namespace gpurun::cloud::libarchive
