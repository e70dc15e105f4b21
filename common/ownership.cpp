// SPDX-License-Identifier: Apache-2.0
#include "ownership.h"

#include "error.h"
#include "sys.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace sluice {

namespace {

// The user the packaged units run sluiced as (dist/sluice.sysusers).
constexpr const char *packaged_user = "sluice";

std::string user_name(uid_t uid)
{
	passwd pw, *res = nullptr;
	char buf[1024];
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res)
		return fmt::format("{} (uid {})", res->pw_name, uid);
	return fmt::format("uid {}", uid);
}

std::string group_name(gid_t gid)
{
	group gr, *res = nullptr;
	char buf[1024];
	if (getgrgid_r(gid, &gr, buf, sizeof(buf), &res) == 0 && res)
		return fmt::format("{} (gid {})", res->gr_name, gid);
	return fmt::format("gid {}", gid);
}

template <typename T> bool contains(const std::vector<T> &v, T x)
{
	return std::find(v.begin(), v.end(), x) != v.end();
}

} // namespace

std::string untrusted_reason(const struct stat &st, const trust_rule &rule)
{
	const std::vector<uid_t> owners =
		rule.owners.empty() ? std::vector<uid_t>{geteuid()} : rule.owners;
	const unsigned mode = st.st_mode & 07777;
	const std::string who = fmt::format("owned by {}, group {}, mode {:04o}", user_name(st.st_uid),
					    group_name(st.st_gid), mode);
	if (!contains(owners, st.st_uid)) {
		std::string allowed;
		for (uid_t u : owners)
			allowed += (allowed.empty() ? "" : " or ") + user_name(u);
		return fmt::format("{} (only {} may own it)", who, allowed);
	}
	if (mode & S_IWOTH)
		return who + " (others may write)";
	if ((mode & S_IWGRP) && !contains(rule.writer_groups, st.st_gid))
		return who + " (its group may write)";
	return "";
}

trust_rule own_rule()
{
	return trust_rule{{geteuid()}, {getegid()}};
}

trust_rule segment_reader_rule()
{
	trust_rule r;
	r.owners = {0};
	if (!contains(r.owners, geteuid()))
		r.owners.push_back(geteuid());
	passwd pw, *res = nullptr;
	char buf[1024];
	if (getpwnam_r(packaged_user, &pw, buf, sizeof(buf), &res) == 0 && res &&
	    !contains(r.owners, res->pw_uid))
		r.owners.push_back(res->pw_uid);
	// The owner's primary group: sluiced's (group `sluice` under the
	// packaged unit, root's when run by hand as root).
	for (uid_t u : r.owners) {
		passwd opw, *ores = nullptr;
		char obuf[1024];
		if (getpwuid_r(u, &opw, obuf, sizeof(obuf), &ores) == 0 && ores &&
		    !contains(r.writer_groups, ores->pw_gid))
			r.writer_groups.push_back(ores->pw_gid);
	}
	if (!contains(r.writer_groups, (gid_t)0))
		r.writer_groups.push_back(0);
	return r;
}

void require_trusted(int fd, const std::string &what, const std::string &path,
		     const trust_rule &rule, const std::string &remedy)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		throw error("{} {}: {}", what, path, errno_text(errno));
	const std::string why = untrusted_reason(st, rule);
	if (!why.empty())
		throw error("{} {} is {}: refusing it, another local user could rewrite it ({})", what,
			    path, why, remedy);
}

void require_trusted(const std::string &what, const std::string &path, const trust_rule &rule,
		     const std::string &remedy)
{
	struct stat st;
	if (stat(path.c_str(), &st) != 0)
		throw error("{} {}: {}", what, path, errno_text(errno));
	const std::string why = untrusted_reason(st, rule);
	if (!why.empty())
		throw error("{} {} is {}: refusing it, another local user could rewrite it ({})", what,
			    path, why, remedy);
}

} // namespace sluice
