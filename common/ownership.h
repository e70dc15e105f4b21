// SPDX-License-Identifier: Apache-2.0
// Who may have written a file or directory sluice trusts: the shm segment
// (backends and next-hop MACs the root dataplanes forward to), sluice-xdp's
// pin directory (its maps) and sluiced's state directory (the configuration
// it restores). Anything another local user could have created or may
// write is refused with one line naming its owner and mode, never adopted.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace sluice {

struct trust_rule {
	// Owners allowed; empty: this process's effective uid only.
	std::vector<uid_t> owners;
	// Groups that may hold write permission (the segment is 0660: the
	// dataplanes write their worker records through the group). A group
	// write bit for any other group, and any write bit for others, refuse.
	std::vector<gid_t> writer_groups;
};

// "" when `st` passes `rule`, else why not: "owned by nobody (uid 65534),
// mode 0666 (others may write)". For the caller's one-line error.
std::string untrusted_reason(const struct stat &st, const trust_rule &rule);

// sluiced's own rule: owned by its effective uid, group-writable only for
// its effective gid (the documented group `sluice`).
trust_rule own_rule();

// The dataplanes' rule for the segment sluiced made: owned by root, this
// process's uid, or the packaged user `sluice`; group-writable only for
// the owner's primary group or root's.
trust_rule segment_reader_rule();

// fstat/stat + untrusted_reason, throwing one line "WHAT PATH is owned by
// ..., refusing it: REMEDY". `what` names the object ("shm segment").
void require_trusted(int fd, const std::string &what, const std::string &path,
		     const trust_rule &rule, const std::string &remedy);
void require_trusted(const std::string &what, const std::string &path, const trust_rule &rule,
		     const std::string &remedy);

} // namespace sluice
