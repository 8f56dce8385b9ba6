// bodywork dashboard: the live tail of a log page. It follows the log's
// stream (server-sent events, same origin) and appends each new line as
// text (textContent, never markup). Without JavaScript the page still
// shows the lines so far.
"use strict";
(function () {
  var pre = document.getElementById("log");
  var status = document.getElementById("tail-status");
  if (!pre || !window.EventSource) { return; }
  var url = pre.getAttribute("data-stream");
  var after = pre.getAttribute("data-after") || "0";
  var shown = parseInt(after, 10) || 0;
  var say = function (text) { if (status) { status.textContent = text; } };
  var source = new EventSource(url + "?after=" + encodeURIComponent(after));
  source.onopen = function () { say("Live: new lines appear below as they are logged."); };
  source.onmessage = function (event) {
    var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(event.data + "\n"));
    shown += 1;
    if (atEnd) { pre.scrollTop = pre.scrollHeight; }
  };
  source.addEventListener("end", function (event) {
    source.close();
    say("The log ended" + (event.data ? ": " + event.data : "") + " (" + shown + " lines).");
  });
  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      say("The live tail stopped; reload the page for newer lines.");
    } else {
      say("The live tail was cut; reconnecting…");
    }
  };
})();
