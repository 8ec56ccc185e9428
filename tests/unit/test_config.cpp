#include <gtest/gtest.h>
#include "config/run_config.h"
TEST(Config, Placeholder) { EXPECT_TRUE(true); }
