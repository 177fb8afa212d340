// moeserve-worker: see worker/worker_main.cc.
#include "worker/worker_main.h"

int main(int argc, char** argv) { return moeserve::WorkerMain(argc, argv, 1); }
