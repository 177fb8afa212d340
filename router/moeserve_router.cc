// moeserve-router: see router/router_main.cc.
#include "router/router_main.h"

int main(int argc, char** argv) { return moeserve::router::RouterMain(argc, argv, 1); }
