// Deliberately empty: ctest runs this binary with WILL_FAIL to show that a
// test binary without test cases fails the run (see catch_main.cpp).
