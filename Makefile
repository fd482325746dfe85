# The two commands of README.md:
#   make run    set up, build, and run the main job (loom run)
#   make test   set up, build, and run every test (ctest)
BUILD ?= build
JOBS  ?= $(shell nproc)

.PHONY: all setup build run test clean
all: build

setup:
	@./scripts/setup.sh

$(BUILD)/CMakeCache.txt: | setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/loom run $(ARGS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

clean:
	rm -rf $(BUILD)
