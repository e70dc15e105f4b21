// SPDX-License-Identifier: Apache-2.0
// The shared-memory segment and its publishing protocol: a reader never sees
// a half-written snapshot, a slot is never reused under a live reader, a dead
// reader stops holding anything, and a segment of another kind is refused
// with one clear line.
#include "conn_sweep.h"
#include "error.h"
#include "shm_segment.h"

#include <sluice/flow.h>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace sluice {
namespace {

// Simulated workers need pids no process has: pid_max is at most 2^22.
constexpr uint32_t fake_pid_base = 0x40000000u;

// Threads reporting in: each add() counts one, wait_for(n) blocks until n
// have. The failsafe only turns a hang into a failure.
class counter_signal {
public:
	void add()
	{
		std::lock_guard lock(mu_);
		n_++;
		cv_.notify_all();
	}
	bool wait_for(int n, std::chrono::seconds failsafe = 120s)
	{
		std::unique_lock lock(mu_);
		return cv_.wait_for(lock, failsafe, [&] { return n_ >= n; });
	}

private:
	std::mutex mu_;
	std::condition_variable cv_;
	int n_ = 0;
};

std::string error_of(const std::function<void()> &f)
{
	try {
		f();
	} catch (const error &e) {
		return e.what();
	}
	return "(no sluice::error thrown)";
}

// Content derived from the generation, so a reader can tell which snapshot
// it holds and whether any of it belongs to another one. Counts vary, the
// ring length both odd and even, so the checksum's tail is covered too.
void fill_for(sluice_snapshot &s, uint64_t gen)
{
	s.hdr.vip_count = 1 + gen % 5;
	s.hdr.backend_count = 2 + gen % 7;
	s.hdr.ring_used = 1 + gen % 97;
	s.node.flags = SLUICE_NODE_HAS_IPV4;
	s.node.mtu = (uint32_t)gen;
	for (uint32_t v = 0; v < s.hdr.vip_count; v++) {
		sluice_vip &vip = s.vips[v];
		vip.family = SLUICE_AF_INET;
		vip.flags = SLUICE_VIP_PRESENT;
		vip.id = v;
		vip.ring_size = (uint32_t)(gen + v);
		vip.ring_inv = gen * 7 + v;
		s.vip_hash[(gen + v) % SLUICE_VIP_HASH_SIZE] = (uint16_t)(v + 1);
	}
	for (uint32_t b = 0; b < s.hdr.backend_count; b++) {
		sluice_backend &be = s.backends[b];
		be.family = SLUICE_AF_INET;
		be.flags = SLUICE_BACKEND_PRESENT | SLUICE_BACKEND_HEALTHY;
		be.id = b;
		be.weight = (uint32_t)(gen * 3 + b);
	}
	for (uint32_t r = 0; r < s.hdr.ring_used; r++)
		s.rings[r] = (uint32_t)(gen * 131 + r);
}

// The whole snapshot is generation `gen`'s: what fill_for wrote, and nothing
// left over from an older snapshot in the same slot.
bool matches(const sluice_snapshot &s, uint64_t gen)
{
	if (s.hdr.generation != gen || s.hdr.vip_count != 1 + gen % 5 ||
	    s.hdr.backend_count != 2 + gen % 7 || s.hdr.ring_used != 1 + gen % 97 ||
	    s.node.mtu != (uint32_t)gen || s.node.flags != SLUICE_NODE_HAS_IPV4)
		return false;
	uint32_t hashed = 0;
	for (uint32_t i = 0; i < SLUICE_VIP_HASH_SIZE; i++)
		if (s.vip_hash[i] != 0) {
			uint32_t v = s.vip_hash[i] - 1u;
			if (v >= s.hdr.vip_count || i != (gen + v) % SLUICE_VIP_HASH_SIZE)
				return false;
			hashed++;
		}
	if (hashed != s.hdr.vip_count)
		return false;
	// Up to 5 VIPs and 8 backends ever: check past the counts for leftovers.
	for (uint32_t v = 0; v < 5; v++) {
		const sluice_vip &vip = s.vips[v];
		if (v >= s.hdr.vip_count) {
			if (vip.family != 0 || vip.ring_size != 0)
				return false;
		} else if (vip.id != v || vip.ring_size != (uint32_t)(gen + v) ||
			   vip.ring_inv != gen * 7 + v || vip.family != SLUICE_AF_INET) {
			return false;
		}
	}
	for (uint32_t b = 0; b < 8; b++) {
		const sluice_backend &be = s.backends[b];
		if (b >= s.hdr.backend_count) {
			if (be.family != 0 || be.weight != 0)
				return false;
		} else if (be.id != b || be.weight != (uint32_t)(gen * 3 + b)) {
			return false;
		}
	}
	for (uint32_t r = 0; r < s.hdr.ring_used; r++)
		if (s.rings[r] != (uint32_t)(gen * 131 + r))
			return false;
	return true;
}

bool intact(const sluice_snapshot &s, uint64_t gen)
{
	return sluice_snapshot_checksum(&s) == s.hdr.checksum && matches(s, gen);
}

class shm_test : public ::testing::Test {
protected:
	std::string fresh_name()
	{
		static std::atomic<int> n{0};
		std::string name = "sluice-test-" + std::to_string(getpid()) + "-" + std::to_string(n++);
		shm_segment::unlink(name);
		names_.push_back(name);
		return name;
	}

	void TearDown() override
	{
		for (const std::string &name : names_)
			shm_segment::unlink(name);
	}

	// Publishes the next generation with fill_for's content.
	static uint64_t publish_next(snapshot_writer &w)
	{
		uint64_t gen = w.generation() + 1;
		return w.publish([gen](sluice_snapshot &s) { fill_for(s, gen); });
	}

	// A segment made by hand, as another build or program would leave it.
	void make_raw(const std::string &name, uint64_t file_size,
		      const std::function<void(sluice_shm_header &)> &edit)
	{
		int fd = shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
		ASSERT_GE(fd, 0) << std::strerror(errno);
		ASSERT_EQ(ftruncate(fd, (off_t)file_size), 0);
		void *p = mmap(nullptr, sizeof(sluice_shm_header), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ASSERT_NE(p, MAP_FAILED);
		sluice_shm_header h;
		sluice_shm_header_init(&h);
		edit(h);
		std::memcpy(p, &h, sizeof(h));
		munmap(p, sizeof(sluice_shm_header));
		close(fd);
	}

	// Both entry points refuse it with one line containing every `want`,
	// and neither touches the segment.
	void expect_refused(const std::string &name, const std::vector<std::string> &wants)
	{
		for (int entry = 0; entry < 2; entry++) {
			std::string msg = error_of([&] {
				if (entry == 0)
					shm_segment::attach(name);
				else
					shm_segment::create_or_adopt(name);
			});
			SCOPED_TRACE(msg);
			EXPECT_EQ(msg.find('\n'), std::string::npos);
			EXPECT_NE(msg.find("/dev/shm/" + name), std::string::npos);
			for (const std::string &want : wants)
				EXPECT_NE(msg.find(want), std::string::npos) << "missing: " << want;
		}
	}

	std::vector<std::string> names_;
};

// ------------------------------------------------------------- publishing

TEST_F(shm_test, readers_never_see_a_torn_or_reused_snapshot)
{
	// Readers run while the writer publishes: every reader must see many
	// generations go by (a reader that only ever saw the last one proves
	// nothing about tearing), and none may be torn, reused under it, or
	// older than one it saw before.
	constexpr int readers = 3;
	constexpr uint64_t want_distinct = 50;
	constexpr int max_publishes = 200'000;  // bounds the writer
	constexpr uint64_t max_reads = 50'000'000; // bounds each reader
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	EXPECT_FALSE(seg.adopted());
	// Long enough that no reader is ever declared dead on a loaded machine:
	// this test is about live readers.
	snapshot_writer writer(seg.get(), 30s);

	std::atomic<bool> done{false};
	std::atomic<uint64_t> torn{0}, reused{0}, backwards{0};
	std::vector<std::atomic<uint64_t>> reads(readers), distinct(readers);
	counter_signal reading; // each reader, once it has read once

	std::vector<std::thread> threads;
	for (int r = 0; r < readers; r++) {
		threads.emplace_back([&, r] {
			worker_handle w = worker_handle::claim(seg.get(), SLUICE_WORKER_KIND_TEST, (uint32_t)r,
							       "reader " + std::to_string(r),
							       fake_pid_base + (uint32_t)r);
			std::mt19937 rng((unsigned)r + 1);
			uint64_t last = 0;
			bool reported = false;
			for (uint64_t i = 0; i < max_reads && !done.load(std::memory_order_relaxed); i++) {
				const sluice_snapshot *s = w.acquire();
				w.heartbeat();
				if (!reported) {
					reading.add();
					reported = true;
				}
				if (!s) {
					std::this_thread::yield();
					continue;
				}
				uint64_t gen = __atomic_load_n(&s->hdr.generation, __ATOMIC_RELAXED);
				if (gen < last)
					backwards++;
				if (gen != last) {
					distinct[r]++;
				} else {
					// Nothing new: let the writer and the other
					// readers have the CPU (2 cores, 4 threads).
					std::this_thread::yield();
				}
				last = gen;
				if (!intact(*s, gen))
					torn++;
				// Hold it a few microseconds, as a burst would.
				auto until = std::chrono::steady_clock::now() +
					     std::chrono::microseconds(rng() % 20);
				while (std::chrono::steady_clock::now() < until) {
				}
				if (__atomic_load_n(&s->hdr.generation, __ATOMIC_RELAXED) != gen ||
				    !intact(*s, gen))
					reused++;
				reads[r]++;
			}
		});
	}

	// Not one publish before every reader is in its loop.
	ASSERT_TRUE(reading.wait_for(readers));
	auto all_saw_enough = [&] {
		for (int r = 0; r < readers; r++)
			if (distinct[r] < want_distinct)
				return false;
		return true;
	};
	int published = 0;
	while (published < max_publishes && !all_saw_enough()) {
		ASSERT_EQ(publish_next(writer), (uint64_t)published + 1);
		published++;
	}
	done = true;
	for (std::thread &t : threads)
		t.join();

	EXPECT_EQ(writer.generation(), (uint64_t)published);
	EXPECT_EQ(torn.load(), 0u);
	EXPECT_EQ(reused.load(), 0u);
	EXPECT_EQ(backwards.load(), 0u);
	for (int r = 0; r < readers; r++) {
		EXPECT_GE(distinct[r].load(), want_distinct)
			<< "reader " << r << " saw " << distinct[r] << " generations of " << published;
		EXPECT_GE(reads[r].load(), distinct[r].load()) << "reader " << r;
	}
	// Released on exit: the records hold nothing any more.
	EXPECT_TRUE(writer.live_workers().empty());
}

TEST_F(shm_test, acquire_before_the_first_publish_is_null)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	worker_handle w = worker_handle::claim(seg.get(), SLUICE_WORKER_KIND_TEST, 0, "w", fake_pid_base);
	EXPECT_EQ(w.acquire(), nullptr);
	snapshot_writer writer(seg.get(), 30s);
	EXPECT_EQ(publish_next(writer), 1u);
	const sluice_snapshot *s = w.acquire();
	ASSERT_NE(s, nullptr);
	EXPECT_TRUE(intact(*s, 1));
	EXPECT_EQ(w.record().info.generation_seen, 1u);
	EXPECT_NE(s->hdr.published_ns, 0u);
}

// A reader holds the one slot it names and nothing else: a worker that
// stopped reading (a dataplane replaying a long capture, a stalled one)
// does not stop the writer, however many generations go by.
TEST_F(shm_test, a_reader_that_never_moves_on_holds_only_its_own_slot)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	sluice_shm *shm = seg.get();
	snapshot_writer writer(shm, 60s);
	worker_handle stuck = worker_handle::claim(shm, SLUICE_WORKER_KIND_TEST, 0, "stuck", fake_pid_base);
	publish_next(writer);
	const sluice_snapshot *held = stuck.acquire();
	ASSERT_NE(held, nullptr);
	const uint32_t held_slot = (uint32_t)(held - shm->slots);
	for (int i = 0; i < 50; i++) {
		publish_next(writer);
		stuck.heartbeat(); // live all along
		ASSERT_NE(sluice_active_slot(shm->ctl.active), held_slot);
	}
	EXPECT_EQ(writer.generation(), 51u);
	EXPECT_TRUE(intact(*held, 1)) << "the slot a live reader names was reused";
	// Once it moves on, its old slot is free again.
	ASSERT_TRUE(intact(*stuck.acquire(), 51));
	for (int i = 0; i < 3; i++)
		publish_next(writer);
	EXPECT_NE(shm->ctl.slot_generation[held_slot], 1u);
}

// Three live readers each naming another old generation hold every slot
// but the active one: publish waits for the worker timeout, then fails with
// one line naming them, and publishes nothing. A reader whose heartbeat
// stops counts as gone after the timeout and frees its slot.
TEST_F(shm_test, readers_that_hold_every_slot_make_publish_fail_naming_them)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	sluice_shm *shm = seg.get();
	snapshot_writer writer(shm, 200ms);
	std::vector<worker_handle> stuck;
	for (uint32_t i = 0; i < SLUICE_SNAPSHOT_SLOTS - 1; i++) {
		stuck.push_back(worker_handle::claim(shm, SLUICE_WORKER_KIND_TEST, i, "stuck" + std::to_string(i),
						     fake_pid_base + i));
		publish_next(writer);
		ASSERT_TRUE(intact(*stuck.back().acquire(), i + 1));
	}
	publish_next(writer); // generation 4: the active slot; 1-3 are named
	std::atomic<bool> beating{true};
	std::thread heart([&] {
		while (beating) {
			for (auto &w : stuck)
				w.heartbeat();
			std::this_thread::sleep_for(20ms);
		}
	});
	std::string msg = error_of([&] { publish_next(writer); });
	EXPECT_NE(msg.find("no snapshot slot came free in 200 ms"), std::string::npos) << msg;
	for (uint32_t i = 0; i < SLUICE_SNAPSHOT_SLOTS - 1; i++)
		EXPECT_NE(msg.find("\"stuck" + std::to_string(i) + "\" (pid " + std::to_string(fake_pid_base + i) +
				   ") at generation " + std::to_string(i + 1)),
			  std::string::npos)
			<< msg;
	EXPECT_EQ(sluice_active_generation(shm->ctl.active), 4u) << "a failed publish changed `active`";
	for (uint32_t i = 0; i < SLUICE_SNAPSHOT_SLOTS - 1; i++)
		EXPECT_TRUE(intact(shm->slots[i], i + 1)) << i;
	// One stops heartbeating: after the timeout its slot is free.
	beating = false;
	heart.join();
	EXPECT_EQ(publish_next(writer), 5u);
}

// A worker that has named nothing yet holds nothing: its first acquire
// names the active slot and re-checks `active`, so the writer never needs
// to keep slots for it.
TEST_F(shm_test, a_worker_that_has_seen_nothing_holds_no_slot)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	snapshot_writer writer(seg.get(), 60s);
	worker_handle fresh = worker_handle::claim(seg.get(), SLUICE_WORKER_KIND_TEST, 0, "fresh", fake_pid_base);
	for (uint32_t i = 0; i < 3 * SLUICE_SNAPSHOT_SLOTS; i++)
		EXPECT_EQ(publish_next(writer), (uint64_t)i + 1);
	const sluice_snapshot *s = fresh.acquire();
	ASSERT_NE(s, nullptr);
	EXPECT_TRUE(intact(*s, 3 * SLUICE_SNAPSHOT_SLOTS));
}

TEST_F(shm_test, a_throwing_fill_publishes_nothing)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	sluice_shm *shm = seg.get();
	snapshot_writer writer(shm, 30s);
	publish_next(writer);
	const uint64_t active = shm->ctl.active;
	uint64_t slots[SLUICE_SNAPSHOT_SLOTS];
	std::memcpy(slots, shm->ctl.slot_generation, sizeof(slots));

	EXPECT_THROW(writer.publish([](sluice_snapshot &s) {
		s.hdr.vip_count = 1;
		throw error("vips[0]: bad");
	}),
		     error);
	// Counts the segment cannot hold would make the checksum read past
	// the slot: refused the same way.
	std::string msg = error_of([&] {
		writer.publish([](sluice_snapshot &s) { s.hdr.ring_used = SLUICE_RING_POOL + 1; });
	});
	EXPECT_NE(msg.find("ring entries"), std::string::npos) << msg;

	EXPECT_EQ(shm->ctl.active, active);
	EXPECT_EQ(std::memcmp(slots, shm->ctl.slot_generation, sizeof(slots)), 0);
	EXPECT_EQ(writer.generation(), 1u);
	EXPECT_TRUE(intact(shm->slots[sluice_active_slot(active)], 1));
	EXPECT_EQ(publish_next(writer), 2u);
}

// --------------------------------------------------------------- segments

TEST_F(shm_test, create_or_adopt_twice_adopts_and_continues_the_generations)
{
	const std::string name = fresh_name();
	std::optional<shm_segment> first = shm_segment::create_or_adopt(name);
	EXPECT_FALSE(first->adopted());
	EXPECT_EQ(first->name(), name);
	EXPECT_EQ((*first)->hdr.magic, SLUICE_SHM_MAGIC);
	EXPECT_EQ((*first)->hdr.abi_version, SLUICE_ABI_VERSION);
	EXPECT_EQ((*first)->hdr.segment_size, sizeof(sluice_shm));
	EXPECT_EQ((*first)->ctl.active, SLUICE_ACTIVE_NONE);

	// The worker's own mapping, as a dataplane holds it.
	shm_segment dataplane_map = shm_segment::attach(name);
	worker_handle w = worker_handle::claim(dataplane_map.get(), SLUICE_WORKER_KIND_TEST, 0, "w",
					       fake_pid_base);
	{
		snapshot_writer writer(first->get(), 30s);
		for (int i = 0; i < 3; i++)
			publish_next(writer);
		ASSERT_NE(w.acquire(), nullptr);
	}
	const uint64_t active = (*first)->ctl.active;
	first.reset(); // the first sluiced exits; its lock goes with it

	shm_segment second = shm_segment::create_or_adopt(name);
	EXPECT_TRUE(second.adopted());
	EXPECT_EQ(second->ctl.active, active);
	snapshot_writer writer(second.get(), 30s);
	EXPECT_EQ(writer.generation(), 3u);
	EXPECT_EQ(publish_next(writer), 4u);

	// The worker attached through the first mapping follows.
	const sluice_snapshot *s = w.acquire();
	ASSERT_NE(s, nullptr);
	EXPECT_TRUE(intact(*s, 4));

	shm_segment dataplane = shm_segment::attach(name);
	EXPECT_EQ(sluice_active_generation(dataplane->ctl.active), 4u);
}

TEST_F(shm_test, a_second_sluiced_on_a_segment_is_refused_while_the_first_holds_it)
{
	const std::string name = fresh_name();
	std::optional<shm_segment> first = shm_segment::create_or_adopt(name);
	snapshot_writer writer(first->get(), 30s);
	publish_next(writer);
	// In this process or another: the lock is per open of the segment.
	std::string msg = error_of([&] { shm_segment::create_or_adopt(name); });
	EXPECT_NE(msg.find("/dev/shm/" + name + " is held by another sluiced (pid " +
			   std::to_string(getpid()) + ")"),
		  std::string::npos)
		<< msg;
	EXPECT_EQ(msg.find('\n'), std::string::npos);
	// The refused one touched nothing: the segment still holds generation 1.
	EXPECT_EQ(sluice_active_generation((*first)->ctl.active), 1u);
	EXPECT_TRUE(intact((*first)->slots[sluice_active_slot((*first)->ctl.active)], 1));
	// Once the first is gone the next one adopts it.
	first.reset();
	shm_segment next = shm_segment::create_or_adopt(name);
	EXPECT_TRUE(next.adopted());
}

TEST_F(shm_test, a_segment_others_may_write_is_refused_by_sluiced_and_dataplanes)
{
	// What a hostile local user leaves for sluiced to adopt: the right
	// header (or none) in a file anyone may write.
	const std::string name = fresh_name();
	make_raw(name, sizeof(sluice_shm), [](sluice_shm_header &) {});
	ASSERT_EQ(chmod(("/dev/shm/" + name).c_str(), 0666), 0);
	expect_refused(name, {"mode 0666 (others may write)", "refusing it"});

	const std::string empty = fresh_name();
	int fd = shm_open(("/" + empty).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(fchmod(fd, 0662), 0);
	close(fd);
	std::string msg = error_of([&] { shm_segment::create_or_adopt(empty); });
	EXPECT_NE(msg.find("mode 0662 (others may write)"), std::string::npos) << msg;
	struct stat st;
	ASSERT_EQ(stat(("/dev/shm/" + empty).c_str(), &st), 0);
	EXPECT_EQ(st.st_size, 0) << "sluiced sized a segment it refused";
}

TEST_F(shm_test, sluiced_creates_its_segment_for_its_group_only)
{
	const std::string name = fresh_name();
	const mode_t old = umask(0077); // a umask that would take the group bits
	shm_segment seg = shm_segment::create_or_adopt(name);
	umask(old);
	struct stat st;
	ASSERT_EQ(stat(("/dev/shm/" + name).c_str(), &st), 0);
	EXPECT_EQ(st.st_mode & 07777, 0660u);
	EXPECT_EQ(st.st_uid, geteuid());
	EXPECT_EQ(st.st_gid, getegid());
}

TEST_F(shm_test, an_unfinished_segment_is_waited_for_or_recreated)
{
	const std::string name = fresh_name();
	// What a creator that died before writing the magic leaves behind.
	make_raw(name, sizeof(sluice_shm), [](sluice_shm_header &h) { h.magic = 0; });
	std::string msg = error_of([&] { shm_segment::attach(name); });
	EXPECT_NE(msg.find("not initialised yet"), std::string::npos) << msg;

	shm_segment seg = shm_segment::create_or_adopt(name);
	EXPECT_FALSE(seg.adopted());
	EXPECT_EQ(seg->hdr.magic, SLUICE_SHM_MAGIC);
	shm_segment::attach(name);
}

TEST_F(shm_test, another_magic_is_refused)
{
	const std::string name = fresh_name();
	make_raw(name, sizeof(sluice_shm), [](sluice_shm_header &h) { h.magic = 0x1234; });
	expect_refused(name, {"magic 0x0000000000001234", "0x4d53454349554c53"});
}

TEST_F(shm_test, another_abi_version_is_refused)
{
	const std::string name = fresh_name();
	// Another version has another size too; the version is what to report.
	make_raw(name, 4096, [](sluice_shm_header &h) { h.abi_version = SLUICE_ABI_VERSION + 1; });
	expect_refused(name, {"ABI version " + std::to_string(SLUICE_ABI_VERSION + 1),
			      "speaks " + std::to_string(SLUICE_ABI_VERSION)});
	std::string msg = error_of([&] { shm_segment::create_or_adopt(name); });
	EXPECT_NE(msg.find("this sluiced speaks"), std::string::npos) << msg;
	EXPECT_NE(msg.find("remove it"), std::string::npos) << msg;
}

TEST_F(shm_test, another_size_is_refused)
{
	const std::string name = fresh_name();
	const uint64_t bigger = sizeof(sluice_shm) + 4096;
	make_raw(name, bigger, [&](sluice_shm_header &h) { h.segment_size = bigger; });
	expect_refused(name, {"segment_size " + std::to_string(bigger),
			      "expects " + std::to_string(sizeof(sluice_shm))});

	const std::string other = fresh_name();
	make_raw(other, sizeof(sluice_shm) - 4096, [](sluice_shm_header &) {});
	expect_refused(other, {std::to_string(sizeof(sluice_shm) - 4096) + " bytes",
			       "expects " + std::to_string(sizeof(sluice_shm))});

	const std::string third = fresh_name();
	make_raw(third, sizeof(sluice_shm), [](sluice_shm_header &h) { h.max_workers = 128; });
	expect_refused(third, {"max_workers 128", "expects " + std::to_string(SLUICE_MAX_WORKERS)});
}

TEST_F(shm_test, attach_to_a_missing_segment_says_what_to_do)
{
	const std::string name = fresh_name();
	EXPECT_EQ(error_of([&] { shm_segment::attach(name); }),
		  "no shm segment /dev/shm/" + name + ": is sluiced running with --shm " + name + "?");
	std::string msg = error_of([&] { shm_segment::attach_wait(name, 120ms); });
	EXPECT_NE(msg.find("no shm segment /dev/shm/" + name), std::string::npos) << msg;
	EXPECT_NE(msg.find("after 120 ms"), std::string::npos) << msg;
	EXPECT_EQ(msg.find('\n'), std::string::npos);

	EXPECT_NE(error_of([] { shm_segment::attach("a/b"); }).find("one file name"), std::string::npos);
	EXPECT_NO_THROW(shm_segment::unlink(name)); // missing: fine
}

TEST_F(shm_test, attach_wait_sees_a_segment_finished_meanwhile)
{
	// What a dataplane started together with sluiced finds: the segment
	// is there but not finished (no magic yet). attach_wait must look,
	// find it unfinished, and take it once it is. inotify tells when its
	// first look is over (it closes the file), so the segment is finished
	// only after attach_wait has seen it unfinished at least once.
	const std::string name = fresh_name();
	make_raw(name, sizeof(sluice_shm), [](sluice_shm_header &h) { h.magic = 0; });
	int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	ASSERT_GE(in, 0) << std::strerror(errno);
	ASSERT_GE(inotify_add_watch(in, ("/dev/shm/" + name).c_str(), IN_CLOSE), 0)
		<< std::strerror(errno);

	std::optional<shm_segment> attached;
	uint64_t magic_on_return = 0; // what the dataplane finds the moment it has it
	std::string failed;
	std::atomic<bool> returned{false};
	std::thread dataplane([&] {
		try {
			attached = shm_segment::attach_wait("/" + name, 120s);
			magic_on_return = __atomic_load_n(&attached->get()->hdr.magic, __ATOMIC_ACQUIRE);
		} catch (const error &e) {
			failed = e.what();
		}
		returned = true;
	});
	// The first close of the file after the watch: attach_wait's first
	// look, done. An attach_wait that returns without closing it (it took
	// the unfinished segment) ends the wait too. (Bounded; the failsafe
	// only turns a hang into a failure.)
	bool looked = false;
	for (int i = 0; i < 1200 && !looked && !returned; i++) {
		pollfd p{in, POLLIN, 0};
		if (poll(&p, 1, 100) > 0) {
			alignas(inotify_event) char buf[4096];
			looked = read(in, buf, sizeof(buf)) > 0;
		}
	}
	close(in);
	EXPECT_TRUE(looked);
	shm_segment sluiced = shm_segment::create_or_adopt(name);
	EXPECT_FALSE(sluiced.adopted()); // unfinished: made afresh, in place
	dataplane.join();

	ASSERT_TRUE(attached) << failed;
	EXPECT_EQ(magic_on_return, SLUICE_SHM_MAGIC) << "attach_wait returned an unfinished segment";
	EXPECT_EQ(attached->name(), name);
	EXPECT_EQ(attached->get()->hdr.magic, SLUICE_SHM_MAGIC);
	// The very segment sluiced publishes to.
	snapshot_writer writer(sluiced.get(), 30s);
	EXPECT_EQ(publish_next(writer), 1u);
	EXPECT_EQ(sluice_active_generation(attached->get()->ctl.active), 1u);
}

TEST_F(shm_test, a_segment_moves_and_unmaps_once)
{
	const std::string name = fresh_name();
	shm_segment a = shm_segment::create_or_adopt(name);
	sluice_shm *p = a.get();
	shm_segment b = std::move(a);
	EXPECT_EQ(a.get(), nullptr);
	EXPECT_EQ(b.get(), p);
	shm_segment c;
	c = std::move(b);
	EXPECT_EQ(c.get(), p);
	p->ctl.pad0 = 7; // still mapped
}

// ----------------------------------------------------------------- writers

TEST_F(shm_test, a_second_live_writer_is_refused)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	sluice_shm *shm = seg.get();
	// Our parent is alive and, for this test, heartbeating as a sluiced.
	shm->ctl.writer_pid = (uint32_t)getppid();
	shm->ctl.writer_heartbeat_ns = monotonic_ns();
	std::string msg = error_of([&] { snapshot_writer w(shm, 30s); });
	EXPECT_NE(msg.find("another sluiced (pid " + std::to_string(getppid()) + ")"),
		  std::string::npos)
		<< msg;

	// A writer whose pid is gone is not in the way, heartbeat or not.
	shm->ctl.writer_pid = fake_pid_base;
	snapshot_writer w(shm, 30s);
	EXPECT_EQ(shm->ctl.writer_pid, (uint32_t)getpid());
}

// ----------------------------------------------------------------- workers

TEST_F(shm_test, claim_reclaims_a_stopped_record_and_keeps_its_counters)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	sluice_shm *shm = seg.get();
	snapshot_writer writer(shm, 30s);
	publish_next(writer);

	worker_handle first = worker_handle::claim(shm, SLUICE_WORKER_KIND_DPDK, 3, "dpdk eth0 q3", fake_pid_base);
	const uint32_t index = first.index();
	first.acquire();
	first.record().counters[0] = 123;
	first.record().vip[7].packets = 45;
	first.record().backend[9].bytes = 6789;
	first.release();
	EXPECT_FALSE(first.owned());
	EXPECT_EQ(shm->workers[index].info.state, SLUICE_WORKER_STOPPED);

	// Fill every other record, so the only one left is the stopped one.
	std::vector<worker_handle> others;
	for (uint32_t i = 1; i < SLUICE_MAX_WORKERS; i++)
		others.push_back(worker_handle::claim(shm, SLUICE_WORKER_KIND_TEST, i, "other", (uint32_t)getpid()));

	worker_handle again = worker_handle::claim(shm, SLUICE_WORKER_KIND_XDP, 0, "xdp eth1", fake_pid_base + 1);
	EXPECT_EQ(again.index(), index);
	const sluice_worker &rec = shm->workers[index];
	EXPECT_EQ(rec.info.pid, fake_pid_base + 1);
	EXPECT_EQ(rec.info.state, SLUICE_WORKER_LIVE);
	EXPECT_EQ(rec.info.kind, SLUICE_WORKER_KIND_XDP);
	EXPECT_STREQ(rec.info.name, "xdp eth1");
	EXPECT_EQ(rec.info.generation_seen, 0u);
	EXPECT_EQ(rec.counters[0], 123u);
	EXPECT_EQ(rec.vip[7].packets, 45u);
	EXPECT_EQ(rec.backend[9].bytes, 6789u);

	// All live now.
	for (int i = 0; i < 3; i++)
		for (worker_handle &h : others)
			h.heartbeat();
	std::string msg = error_of([&] {
		worker_handle::claim(shm, SLUICE_WORKER_KIND_TEST, 0, "one too many", (uint32_t)getpid());
	});
	EXPECT_NE(msg.find("all 64 worker records"), std::string::npos) << msg;
	EXPECT_EQ(writer.live_workers().size(), SLUICE_MAX_WORKERS);

	// A live-looking record whose owner went silent is taken over too.
	sluice_worker_info &silent = others[5].record().info;
	silent.heartbeat_ns = monotonic_ns() - 10'000'000'000ull;
	const uint32_t silent_index = others[5].index();
	worker_handle taker = worker_handle::claim(shm, SLUICE_WORKER_KIND_TEST, 0, "taker", (uint32_t)getpid());
	EXPECT_EQ(taker.index(), silent_index);
	EXPECT_STREQ(shm->workers[silent_index].info.name, "taker");
}

TEST_F(shm_test, a_replay_counts_apart_and_leaves_nothing_when_it_exits)
{
	// `sluice-xdp --pcap` / `sluice-dpdk --pcap` against a live segment:
	// its packets are not the node's, and once it exits cleanly no
	// "stopped" worker is left to age (and fire the heartbeat alert).
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	sluice_shm *shm = seg.get();
	worker_handle replay = worker_handle::claim(shm, SLUICE_WORKER_KIND_REPLAY, 0, "xdp pcap", fake_pid_base);
	const uint32_t index = replay.index();
	replay.record().counters[0] = 500;
	replay.record().vip[3].packets = 500;
	replay.release();
	const sluice_worker &rec = shm->workers[index];
	EXPECT_EQ(rec.info.pid, 0u);
	EXPECT_EQ(rec.info.state, SLUICE_WORKER_FREE);
	EXPECT_EQ(rec.counters[0], 0u);
	EXPECT_EQ(rec.vip[3].packets, 0u);

	// A replay that died leaves its counts; a dataplane taking its record
	// starts from zero, not from the replay's packets.
	worker_handle dead = worker_handle::claim(shm, SLUICE_WORKER_KIND_REPLAY, 0, "dpdk pcap q0", fake_pid_base + 1);
	dead.record().backend[2].packets = 9;
	dead.record().info.state = SLUICE_WORKER_STOPPED; // as if it exited without releasing
	const uint32_t dead_index = dead.index();
	std::vector<worker_handle> others;
	for (uint32_t i = 0; i < SLUICE_MAX_WORKERS; i++)
		if (i != dead_index)
			others.push_back(
				worker_handle::claim(shm, SLUICE_WORKER_KIND_TEST, i, "other", (uint32_t)getpid()));
	worker_handle dp = worker_handle::claim(shm, SLUICE_WORKER_KIND_DPDK, 0, "dpdk eth0 q0", fake_pid_base + 2);
	EXPECT_EQ(dp.index(), dead_index);
	EXPECT_EQ(shm->workers[dead_index].backend[2].packets, 0u);

	// And a replay never takes a stopped dataplane's record: that would
	// zero the node's totals.
	dp.record().counters[0] = 1234;
	dp.release();
	std::string msg = error_of([&] {
		worker_handle::claim(shm, SLUICE_WORKER_KIND_REPLAY, 0, "xdp pcap", fake_pid_base + 3);
	});
	EXPECT_NE(msg.find("all 64 worker records"), std::string::npos) << msg;
	EXPECT_EQ(shm->workers[dead_index].counters[0], 1234u);
	dead = worker_handle(); // already taken over: nothing of it to release
}

TEST_F(shm_test, a_restarted_worker_takes_back_its_own_record)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	sluice_shm *shm = seg.get();
	worker_handle a = worker_handle::claim(shm, SLUICE_WORKER_KIND_XDP, 0, "xdp eth0", fake_pid_base);
	worker_handle b = worker_handle::claim(shm, SLUICE_WORKER_KIND_XDP, 0, "xdp eth1", fake_pid_base + 1);
	const uint32_t a_index = a.index();
	a.record().counters[0] = 77;
	a.release();
	b.release();
	// Free records remain, but the same worker comes back to its own, so
	// status shows it once and its counters go on from where they were.
	worker_handle again = worker_handle::claim(shm, SLUICE_WORKER_KIND_XDP, 0, "xdp eth0", fake_pid_base + 2);
	EXPECT_EQ(again.index(), a_index);
	EXPECT_EQ(again.record().counters[0], 77u);
	// Another name takes a free record, not the stopped one of eth1.
	worker_handle other = worker_handle::claim(shm, SLUICE_WORKER_KIND_DPDK, 0, "dpdk q0", fake_pid_base + 3);
	EXPECT_NE(other.index(), b.index());
}

TEST_F(shm_test, a_new_owner_of_a_record_counts_no_connections_until_its_own_sweep)
{
	// The last owner's counts described its connection table: a restarted
	// dataplane's record must not show them as its own (a drain would read
	// the old numbers) until its first sweep of its own table is done.
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	sluice_shm *shm = seg.get();
	worker_handle first = worker_handle::claim(shm, SLUICE_WORKER_KIND_DPDK, 0, "dpdk q0", fake_pid_base);
	conn_sweep sweep(1, 1000000000ull);
	sweep.announce(first.record());
	sluice_ct_bucket b{};
	b.way[0].state = SLUICE_CT_EST;
	b.way[0].backend_id = 12;
	b.way[0].last_seen_s = 50;
	b.way[0].tags[0] = 1;
	sweep.due(1, 0);
	ASSERT_TRUE(sweep.counted(&b, 1, 50, sluice_ct_default_timeouts()));
	sweep.publish(first.record(), 2);
	conn_reading meta;
	auto got = std::make_unique<conn_tally>();
	ASSERT_TRUE(read_conns(first.record(), meta, *got));
	EXPECT_EQ(got->by_backend[12].active, 1u);
	first.release();

	worker_handle again = worker_handle::claim(shm, SLUICE_WORKER_KIND_DPDK, 0, "dpdk q0", fake_pid_base + 1);
	EXPECT_EQ(again.index(), first.index());
	EXPECT_FALSE(read_conns(again.record(), meta, *got));
	EXPECT_EQ(meta.period_ms, 0u) << "not counting until it says it does";
}

TEST_F(shm_test, long_names_are_cut_and_terminated)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	worker_handle w = worker_handle::claim(seg.get(), SLUICE_WORKER_KIND_TEST, 0,
					       std::string(100, 'x'), fake_pid_base);
	EXPECT_EQ(std::string(w.record().info.name), std::string(31, 'x'));
}

TEST_F(shm_test, concurrent_claims_never_share_a_record)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	sluice_shm *shm = seg.get();
	// Release some first, so claims race over stopped records of the same
	// pid as well as over free ones.
	for (int i = 0; i < 16; i++)
		worker_handle::claim(shm, SLUICE_WORKER_KIND_TEST, 0, "gone", (uint32_t)getpid());

	constexpr int threads = 8;
	std::vector<std::vector<worker_handle>> got(threads);
	std::atomic<int> refused{0};
	std::vector<std::thread> ts;
	for (int t = 0; t < threads; t++)
		ts.emplace_back([&, t] {
			for (int i = 0; i < 9; i++) {
				try {
					got[t].push_back(worker_handle::claim(shm, SLUICE_WORKER_KIND_TEST, 0,
									      "racer", (uint32_t)getpid()));
				} catch (const error &) {
					refused++;
				}
			}
		});
	for (std::thread &t : ts)
		t.join();

	std::vector<uint32_t> indices;
	for (auto &v : got)
		for (auto &h : v)
			indices.push_back(h.index());
	std::sort(indices.begin(), indices.end());
	EXPECT_EQ(std::adjacent_find(indices.begin(), indices.end()), indices.end());
	EXPECT_EQ(indices.size(), SLUICE_MAX_WORKERS);
	EXPECT_EQ(refused.load(), threads * 9 - (int)SLUICE_MAX_WORKERS);
}

TEST_F(shm_test, a_moved_worker_handle_releases_once)
{
	shm_segment seg = shm_segment::create_or_adopt(fresh_name());
	sluice_shm *shm = seg.get();
	uint32_t index;
	{
		worker_handle a = worker_handle::claim(shm, SLUICE_WORKER_KIND_TEST, 0, "a", fake_pid_base);
		index = a.index();
		worker_handle b = std::move(a);
		EXPECT_FALSE(a.owned());
		EXPECT_EQ(shm->workers[index].info.state, SLUICE_WORKER_LIVE);
	}
	EXPECT_EQ(shm->workers[index].info.state, SLUICE_WORKER_STOPPED);
}

} // namespace
} // namespace sluice
