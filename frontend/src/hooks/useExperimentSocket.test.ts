import { act, renderHook } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeWebSocket } from "../test/FakeWebSocket";
import { run } from "../test/fixtures";
import { backoffDelay, useExperimentSocket } from "./useExperimentSocket";

const progress = (done: number, percent: number, technique = "ptq_int8") => ({
  type: "progress_update",
  experiment_id: "e1",
  current_technique: { name: technique, progress_percent: 50, eta_seconds: 10, stage: "Calibrating" },
  overall_progress: { completed_techniques: done, total_techniques: 3, progress_percent: percent, eta_seconds: 60 },
  metrics: { original_accuracy: 0.96, current_accuracy: 0.95, original_size_mb: 1, current_size_mb: 0.25 },
});

const snapshot = (runs: unknown[], done: number, percent: number, status = "running") => ({
  type: "snapshot",
  experiment_id: "e1",
  experiment: { id: "e1", status, techniques: ["ptq_int8", "ptq_int4", "prune_structured"] },
  runs,
  progress: progress(done, percent),
});

function mount() {
  return renderHook(() =>
    useExperimentSocket("e1", {
      WebSocketImpl: FakeWebSocket as unknown as typeof WebSocket,
      url: "ws://test/ws/experiments/e1",
      backoff: { initialMs: 100, maxMs: 1000, factor: 2 },
      random: () => 1,
    }),
  );
}

describe("useExperimentSocket", () => {
  beforeEach(() => {
    FakeWebSocket.reset();
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("shows progress from the snapshot and live updates", () => {
    const { result } = mount();
    expect(result.current.connection).toBe("connecting");
    const socket = FakeWebSocket.latest();
    act(() => {
      socket.serverOpen();
      socket.serverSend(snapshot([], 0, 5));
    });
    expect(result.current.connection).toBe("open");
    expect(result.current.state.progress?.overall_progress.progress_percent).toBe(5);
    act(() => socket.serverSend(progress(0, 20)));
    expect(result.current.state.progress?.overall_progress.progress_percent).toBe(20);
    expect(result.current.state.updates).toBe(1);
  });

  it("reconnects with growing backoff, shows it, and merges the new snapshot", () => {
    const { result } = mount();
    const first = FakeWebSocket.latest();
    act(() => {
      first.serverOpen();
      first.serverSend(snapshot([], 0, 10));
      first.serverSend({ type: "technique_completed", experiment_id: "e1", technique: "ptq_int8", run: run("ptq_int8") });
    });
    expect(Object.keys(result.current.state.runs)).toEqual(["ptq_int8"]);

    act(() => first.serverClose(1006));
    expect(result.current.connection).toBe("reconnecting");
    expect(result.current.retryInMs).toBe(100);
    expect(FakeWebSocket.instances).toHaveLength(1);

    act(() => vi.advanceTimersByTime(99));
    expect(FakeWebSocket.instances).toHaveLength(1);
    act(() => vi.advanceTimersByTime(1));
    expect(FakeWebSocket.instances).toHaveLength(2);

    // The second attempt fails before opening: the next wait doubles.
    act(() => FakeWebSocket.latest().serverClose(1006));
    expect(result.current.retryInMs).toBe(200);
    expect(result.current.attempts).toBe(2);
    act(() => vi.advanceTimersByTime(200));
    expect(FakeWebSocket.instances).toHaveLength(3);

    // While the page was away ptq_int4 finished: the snapshot brings it, and ptq_int8 is kept.
    const third = FakeWebSocket.latest();
    act(() => {
      third.serverOpen();
      third.serverSend(snapshot([run("ptq_int8"), run("ptq_int4", { accuracy: 0.9 })], 2, 70));
    });
    expect(result.current.connection).toBe("open");
    expect(result.current.attempts).toBe(0);
    expect(result.current.state.snapshots).toBe(2);
    expect(result.current.state.finishedOrder).toEqual(["ptq_int8", "ptq_int4"]);
    expect(result.current.state.runs.ptq_int4?.accuracy).toBe(0.9);
    expect(result.current.state.progress?.overall_progress.completed_techniques).toBe(2);

    // A late update from before the gap must not move the bar backwards.
    act(() => third.serverSend(progress(1, 40)));
    expect(result.current.state.progress?.overall_progress.progress_percent).toBe(70);
  });

  it("caps the backoff delay", () => {
    const options = { initialMs: 100, maxMs: 1000, factor: 2 };
    expect(backoffDelay(1, options, () => 1)).toBe(100);
    expect(backoffDelay(4, options, () => 1)).toBe(800);
    expect(backoffDelay(10, options, () => 1)).toBe(1000);
    expect(backoffDelay(10, options, () => 0)).toBe(500);
  });

  it("stops after the experiment ends and does not reconnect", () => {
    const { result } = mount();
    const socket = FakeWebSocket.latest();
    act(() => {
      socket.serverOpen();
      socket.serverSend(snapshot([], 2, 90));
      socket.serverSend({ type: "experiment_completed", experiment_id: "e1" });
    });
    expect(result.current.state.outcome).toEqual({ kind: "completed" });
    expect(result.current.connection).toBe("closed");
    expect(socket.closedByClient?.code).toBe(1000);
    act(() => vi.advanceTimersByTime(60_000));
    expect(FakeWebSocket.instances).toHaveLength(1);
  });

  it("gives up on an unknown experiment (close code 4404)", () => {
    const { result } = mount();
    act(() => FakeWebSocket.latest().serverClose(4404, "unknown experiment"));
    expect(result.current.connection).toBe("not_found");
    act(() => vi.advanceTimersByTime(60_000));
    expect(FakeWebSocket.instances).toHaveLength(1);
  });

  it("closes its socket when the page goes away", () => {
    const { unmount } = mount();
    const socket = FakeWebSocket.latest();
    act(() => socket.serverOpen());
    unmount();
    expect(socket.closedByClient?.code).toBe(1000);
    act(() => vi.advanceTimersByTime(60_000));
    expect(FakeWebSocket.instances).toHaveLength(1);
  });
});
