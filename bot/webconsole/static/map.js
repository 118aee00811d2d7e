// The console's map: one circle per district, from /console/map.json. No inline script: the
// page's Content-Security-Policy forbids them, so the settings come as data- attributes.
(function () {
  "use strict";
  var box = document.getElementById("map");
  if (!box || typeof L === "undefined") { return; }
  // The legend's colours, set here: a style attribute would need 'unsafe-inline'.
  document.querySelectorAll(".swatch[data-colour]").forEach(function (el) {
    el.style.backgroundColor = el.getAttribute("data-colour");
  });
  var map = L.map(box, { zoomSnap: 0.5 }).setView([33.2, 43.7], 5.5);
  var tiles = box.getAttribute("data-tiles");
  if (tiles) {
    // Unreachable tiles leave a plain background: the circles and labels stay.
    L.tileLayer(tiles, { maxZoom: 12, attribution: box.getAttribute("data-attribution") }).addTo(map);
  }
  function text(value) {
    var span = document.createElement("span");
    span.textContent = value;
    return span.innerHTML;
  }
  fetch(box.getAttribute("data-source"), { credentials: "same-origin" })
    .then(function (answer) { return answer.json(); })
    .then(function (data) {
      data.governorates.forEach(function (g) {
        L.tooltip({ permanent: true, direction: "center", className: "governorate" })
          .setLatLng([g.lat, g.lon]).setContent(text(g.name)).addTo(map);
      });
      var bounds = [];
      data.districts.forEach(function (d) {
        var size = d.count === null ? 4 : d.count;
        var circle = L.circleMarker([d.lat, d.lon], {
          radius: Math.min(40, 6 + 4 * Math.sqrt(size)),
          color: "#222", weight: 1, fillColor: d.colour, fillOpacity: 0.75
        }).addTo(map);
        circle.getElement().setAttribute("data-district", d.pcode);
        var html = "<strong>" + text(d.name) + "</strong><br>" + text(box.getAttribute("data-reports")) +
          ": " + text(d.label) + "<br>" + text(box.getAttribute("data-urgent")) + ": " + text(d.urgent);
        if (d.link) {
          html += "<br><a href=\"" + text(d.link) + "\">" + text(box.getAttribute("data-more")) + "</a>";
        }
        circle.bindPopup(html);
        bounds.push([d.lat, d.lon]);
      });
      if (bounds.length > 1) { map.fitBounds(bounds, { padding: [30, 30], maxZoom: 8 }); }
      box.setAttribute("data-ready", String(data.districts.length));
    });
})();
