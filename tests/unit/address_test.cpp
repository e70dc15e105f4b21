// SPDX-License-Identifier: Apache-2.0
#include "address.h"
#include "config.h"
#include "error.h"

#include <gtest/gtest.h>

using sluice::ip_address;
using sluice::mac_address;
using sluice::vip_key;

TEST(Address, ParsesAndPrintsBothFamilies)
{
	auto a = ip_address::parse("10.0.0.11");
	ASSERT_TRUE(a);
	EXPECT_TRUE(a->is_v4());
	EXPECT_EQ(a->str(), "10.0.0.11");
	EXPECT_EQ(a->bytes[4], 0); // the rest of the 16 bytes stays zero
	auto b = ip_address::parse("FD00:0::2");
	ASSERT_TRUE(b);
	EXPECT_TRUE(b->is_v6());
	EXPECT_EQ(b->str(), "fd00::2");
}

TEST(Address, RefusesWhatIsNotAnAddress)
{
	for (const char *bad : {"", "10.0.0", "10.0.0.256", "10.0.0.1 ", "010.0.0.1x", "fd00:::1",
				"backend-1", "1.2.3.4/24", "::ffff:1.2.3.4.5"})
		EXPECT_FALSE(ip_address::parse(bad)) << bad;
}

TEST(Mac, ParsesExactlySixPairs)
{
	auto m = mac_address::parse("02:00:00:00:00:FE");
	ASSERT_TRUE(m);
	EXPECT_EQ(m->str(), "02:00:00:00:00:fe");
	for (const char *bad : {"02:00:00:00:00", "02-00-00-00-00-fe", "02:00:00:00:00:fg", "2:0:0:0:0:fe"})
		EXPECT_FALSE(mac_address::parse(bad)) << bad;
}

TEST(VipKey, ParsesAddressPortProtocol)
{
	auto k = vip_key::parse("10.200.1.1:80/tcp");
	EXPECT_EQ(k.address.str(), "10.200.1.1");
	EXPECT_EQ(k.port, 80);
	EXPECT_EQ(k.proto, sluice::l4_proto::tcp);
	EXPECT_EQ(k.str(), "10.200.1.1:80/tcp");
	auto v6 = vip_key::parse("[fd00:200::1]:0/udp");
	EXPECT_EQ(v6.str(), "[fd00:200::1]:0/udp");
	EXPECT_EQ(v6.port, 0);
}

TEST(VipKey, RefusesMalformedWithTheReason)
{
	struct {
		const char *in;
		const char *why;
	} cases[] = {
		{"10.200.1.1:80", "no /protocol"},
		{"10.200.1.1:80/sctp", "protocol must be tcp or udp"},
		{"10.200.1.1/tcp", "no :port"},
		{"10.200.1.1:65536/tcp", "port must be 0-65535"},
		{"10.200.1.1:-1/tcp", "port must be 0-65535"},
		{"10.200.1.999:80/tcp", "bad address"},
		{"fd00::1:80/tcp", "IPv6 addresses go in brackets"},
		{"[fd00::1:80/tcp", "unterminated [IPv6] or no :port"},
	};
	for (const auto &c : cases) {
		try {
			vip_key::parse(c.in);
			ADD_FAILURE() << c.in << " parsed";
		} catch (const sluice::error &e) {
			EXPECT_NE(std::string(e.what()).find(c.why), std::string::npos) << e.what();
			EXPECT_NE(std::string(e.what()).find(c.in), std::string::npos) << e.what();
		}
	}
}
