// SPDX-License-Identifier: Apache-2.0
// `sluicectl stats --watch`'s rates (controlplane/rates.h): from two readings
// of the stats verb, per VIP, backend, drop reason and worker.
#include "rates.h"

#include <gtest/gtest.h>

using namespace sluice;

namespace {

json reading(uint64_t vip_packets, uint64_t vip_bytes, uint64_t vip_flows, uint64_t be_packets,
	     uint64_t no_backend, uint64_t rx, uint32_t worker_pid = 4242)
{
	return json{
		{"generation", 3},
		{"counters", {{"rx_packets", rx}, {"drop_no_backend", no_backend}, {"drop_tx_full", 0}}},
		{"vips",
		 {{{"vip", "10.200.1.1:80/tcp"},
		   {"packets", vip_packets},
		   {"bytes", vip_bytes},
		   {"new_flows", vip_flows},
		   {"backends",
		    {{{"address", "10.0.0.11"}, {"state", "up"}, {"packets", be_packets}, {"bytes", be_packets * 100},
		      {"new_flows", 0}},
		     {{"address", "10.0.0.12"}, {"state", "down"}, {"packets", 0}, {"bytes", 0}, {"new_flows", 0}}}}}}},
		{"workers",
		 {{{"name", "dpdk eth0 q0"},
		   {"kind", "dpdk"},
		   {"index", 0},
		   {"pid", worker_pid},
		   {"state", "live"},
		   {"heartbeat_age_s", 0.25},
		   {"counters", {{"rx_packets", rx}, {"tx_packets", rx / 2}}}}}},
	};
}

TEST(StatsRates, DifferencesOverTheInterval)
{
	json a = reading(1000, 64000, 10, 400, 5, 2000);
	json b = reading(3000, 192000, 30, 1400, 9, 6000);
	json r = stats_rates(a, b, 2.0);
	EXPECT_DOUBLE_EQ(r["interval_s"].get<double>(), 2.0);
	const json &v = r["vips"][0];
	EXPECT_EQ(v["vip"], "10.200.1.1:80/tcp");
	EXPECT_DOUBLE_EQ(v["packets_per_s"].get<double>(), 1000.0);
	EXPECT_DOUBLE_EQ(v["bits_per_s"].get<double>(), 128000.0 * 8 / 2);
	EXPECT_DOUBLE_EQ(v["new_flows_per_s"].get<double>(), 10.0);
	EXPECT_DOUBLE_EQ(v["backends"][0]["packets_per_s"].get<double>(), 500.0);
	EXPECT_DOUBLE_EQ(v["backends"][0]["bits_per_s"].get<double>(), 100000 * 8 / 2.0);
	EXPECT_EQ(v["backends"][1]["state"], "down");
	EXPECT_DOUBLE_EQ(v["backends"][1]["packets_per_s"].get<double>(), 0.0);
	EXPECT_DOUBLE_EQ(r["drops_per_s"]["no_backend"].get<double>(), 2.0);
	EXPECT_DOUBLE_EQ(r["drops_per_s"]["tx_full"].get<double>(), 0.0);
	EXPECT_FALSE(r["drops_per_s"].contains("rx_packets")) << "only drops, by reason";
	const json &w = r["workers"][0];
	EXPECT_DOUBLE_EQ(w["rx_packets_per_s"].get<double>(), 2000.0);
	EXPECT_DOUBLE_EQ(w["tx_packets_per_s"].get<double>(), 1000.0);
	EXPECT_DOUBLE_EQ(w["heartbeat_age_s"].get<double>(), 0.25);
}

TEST(StatsRates, FirstReadingHasNoRates)
{
	json r = stats_rates(nullptr, reading(1000, 64000, 10, 400, 5, 2000), 1.0);
	EXPECT_TRUE(r["interval_s"].is_null());
	EXPECT_TRUE(r["vips"][0]["packets_per_s"].is_null());
	EXPECT_TRUE(r["vips"][0]["backends"][0]["bits_per_s"].is_null());
	EXPECT_TRUE(r["drops_per_s"]["no_backend"].is_null());
	EXPECT_TRUE(r["workers"][0]["rx_packets_per_s"].is_null());
	// What is known without a second reading is still there.
	EXPECT_EQ(r["workers"][0]["name"], "dpdk eth0 q0");
	EXPECT_EQ(r["vips"][0]["backends"][1]["state"], "down");
}

TEST(StatsRates, MatchedByNameNotPosition)
{
	json a = reading(1000, 64000, 10, 400, 5, 2000);
	json b = reading(1000, 64000, 10, 600, 5, 2000);
	// The second reading lists the backends the other way round, and a new
	// VIP first.
	std::swap(b["vips"][0]["backends"][0], b["vips"][0]["backends"][1]);
	b["vips"].insert(b["vips"].begin(), json{{"vip", "10.200.1.9:53/udp"}, {"packets", 77}, {"bytes", 7700},
						   {"new_flows", 7}, {"backends", json::array()}});
	json r = stats_rates(a, b, 1.0);
	EXPECT_EQ(r["vips"][0]["vip"], "10.200.1.9:53/udp");
	EXPECT_TRUE(r["vips"][0]["packets_per_s"].is_null()) << "a VIP just added has nothing to compare with";
	EXPECT_EQ(r["vips"][1]["backends"][1]["address"], "10.0.0.11");
	EXPECT_DOUBLE_EQ(r["vips"][1]["backends"][1]["packets_per_s"].get<double>(), 200.0);
	EXPECT_DOUBLE_EQ(r["vips"][1]["backends"][0]["packets_per_s"].get<double>(), 0.0);
}

TEST(StatsRates, ACounterThatWentDownWasResetAndCountsFromZero)
{
	// The backend was deleted and added again between the readings: its
	// counters start from zero, so the 100 it counts now are new.
	json a = reading(1000, 64000, 10, 5000, 5, 2000);
	json b = reading(1100, 70400, 10, 100, 5, 2100);
	json r = stats_rates(a, b, 1.0);
	EXPECT_DOUBLE_EQ(r["vips"][0]["backends"][0]["packets_per_s"].get<double>(), 100.0);
	EXPECT_DOUBLE_EQ(r["vips"][0]["packets_per_s"].get<double>(), 100.0);
}

TEST(StatsRates, AWorkerRecordTakenByAnotherProcessHasNoRateYet)
{
	json a = reading(0, 0, 0, 0, 0, 1000, 4242);
	json b = reading(0, 0, 0, 0, 0, 900000, 5151);
	json r = stats_rates(a, b, 1.0);
	EXPECT_EQ(r["workers"][0]["pid"], 5151);
	EXPECT_TRUE(r["workers"][0]["rx_packets_per_s"].is_null());
}

TEST(StatsRates, NoTimeBetweenReadingsGivesNoRate)
{
	json a = reading(1000, 64000, 10, 400, 5, 2000);
	json r = stats_rates(a, a, 0.0);
	EXPECT_TRUE(r["vips"][0]["packets_per_s"].is_null());
}

} // namespace
