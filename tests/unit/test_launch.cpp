// dist::detect_launch: rank, world and local rank from each launcher's variables.
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "core/error.h"
#include "dist/launch.h"

namespace speedrun::dist {
namespace {

LaunchInfo launch_with(const std::map<std::string, std::string>& env) {
  return detect_launch([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(Launch, PlainProcessIsRankZeroOfOne) {
  const LaunchInfo l = launch_with({});
  EXPECT_EQ(l.rank, 0);
  EXPECT_EQ(l.world, 1);
  EXPECT_EQ(l.local_rank, 0);
  EXPECT_FALSE(l.under_mpi);
}

TEST(Launch, OpenMpi) {
  const LaunchInfo l = launch_with(
      {{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  EXPECT_EQ(l.rank, 5);
  EXPECT_EQ(l.world, 8);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_TRUE(l.under_mpi);
  EXPECT_EQ(l.launcher, "Open MPI");
}

TEST(Launch, MpichHydra) {
  const LaunchInfo l = launch_with({{"PMI_RANK", "3"}, {"PMI_SIZE", "4"}, {"MPI_LOCALRANKID", "3"}});
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.world, 4);
  EXPECT_EQ(l.local_rank, 3);
  EXPECT_TRUE(l.under_mpi);
}

TEST(Launch, TorchrunStyle) {
  const LaunchInfo l = launch_with({{"RANK", "2"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}});
  EXPECT_EQ(l.rank, 2);
  EXPECT_EQ(l.world, 4);
  EXPECT_EQ(l.local_rank, 0);
  EXPECT_FALSE(l.under_mpi);  // the Session refuses this: the process group needs MPI
}

TEST(Launch, MpiVariablesWinOverTorchrunStyle) {
  const LaunchInfo l = launch_with({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "3"},
                                    {"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}});
  EXPECT_EQ(l.rank, 1);
  EXPECT_EQ(l.world, 2);
  EXPECT_EQ(l.local_rank, 3);  // Open MPI's local rank absent: LOCAL_RANK
}

TEST(Launch, BadValuesNameTheVariable) {
  try {
    launch_with({{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "2"}});
    FAIL() << "expected UserError";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("OMPI_COMM_WORLD_RANK='x'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(launch_with({{"RANK", "4"}, {"WORLD_SIZE", "4"}}), UserError);
}

TEST(Launch, IdentityLineNamesRankWorldAndLocalRank) {
  const LaunchInfo l = launch_with({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                                    {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  const std::string line = identity_line(l, "device cpu");
  EXPECT_EQ(line.rfind("speedrun rank 1/2 (local rank 1) on host ", 0), 0u) << line;
  EXPECT_NE(line.find("device cpu"), std::string::npos);
}

}  // namespace
}  // namespace speedrun::dist
