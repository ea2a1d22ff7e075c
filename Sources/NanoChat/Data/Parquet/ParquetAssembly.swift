import Foundation

extension ParquetFile {
    /// The values of one top-level field for every row of a row group, nested values assembled from the
    /// repetition/definition levels of its leaf columns (lists, structs, maps, with nulls where undefined).
    public func column(_ field: String, rowGroup: Int) throws -> [ParquetValue] {
        guard let top = schema[0].children.first(where: { schema[$0].name == field }) else {
            throw NanoChatError("\(url.path) has no column \(field); columns: \(fields.joined(separator: ", "))")
        }
        let leafIDs = leaves.indices.filter { leaves[$0].chain.first == top }
        var rows: [ParquetValue]? = nil
        for li in leafIDs {
            let col = try readColumn(rowGroup: rowGroup, leaf: li)
            let perRow = try assembleLeaf(col, leaves[li], expectedRows: rowGroups[rowGroup].numRows)
            if let r = rows {
                rows = zip(r, perRow).map { merge($0, $1) }
            } else {
                rows = perRow
            }
        }
        return (rows ?? []).map { logical(top, $0) }
    }

    /// Fast path for a flat string column (upstream's `text`): the bytes of each row, nil for a null.
    public func strings(_ field: String, rowGroup: Int) throws -> [[UInt8]?] {
        guard let li = leaves.firstIndex(where: { $0.path == [field] }), leaves[li].maxRep == 0,
              schema[leaves[li].chain[0]].physicalType == 6 else {
            throw NanoChatError("\(url.path): expected a flat string column named \(field); columns: \(fields.joined(separator: ", "))")
        }
        let col = try readColumn(rowGroup: rowGroup, leaf: li)
        guard case .bytes(let arena, let off) = col.values else { return [] }
        let maxDef = leaves[li].maxDef
        var out: [[UInt8]?] = []
        out.reserveCapacity(rowGroups[rowGroup].numRows)
        var v = 0
        let n = maxDef > 0 ? col.defs.count : off.count - 1
        for i in 0..<n {
            if maxDef > 0 && col.defs[i] != maxDef { out.append(nil); continue }
            guard v + 1 < off.count else { throw fail("column \(field) has fewer values than its levels say") }
            out.append(Array(arena[off[v]..<off[v + 1]]))
            v += 1
        }
        return out
    }

    /// One leaf's triples (rep, def, value) grouped into rows, each built down the leaf's path:
    /// repeated nodes become lists (split where rep equals their repetition depth), optional nodes are null
    /// where the definition level stops above them, groups are single-key groups to be merged with siblings.
    func assembleLeaf(_ col: ColumnData, _ leaf: LeafColumn, expectedRows: Int) throws -> [ParquetValue] {
        let n = leaf.maxDef > 0 ? col.defs.count : (leaf.maxRep > 0 ? col.reps.count : col.values.count)
        guard leaf.maxRep == 0 || col.reps.count == n else { throw fail("column \(leaf.path) has mismatched level counts") }
        // definition and repetition depth reached after each node of the chain
        var defAt: [Int] = [], repAt: [Int] = []
        var d = 0, r = 0
        for i in leaf.chain {
            if schema[i].repetition != 0 { d += 1 }
            if schema[i].repetition == 2 { r += 1 }
            defAt.append(d)
            repAt.append(r)
        }
        // value index of each triple (only fully defined triples carry a value)
        var valueIndex = [Int](repeating: -1, count: n)
        var v = 0
        for t in 0..<n where leaf.maxDef == 0 || col.defs[t] == leaf.maxDef {
            valueIndex[t] = v
            v += 1
        }
        guard v <= col.values.count else { throw fail("column \(leaf.path) has fewer values than its levels say") }
        func def(_ t: Int) -> Int { leaf.maxDef > 0 ? Int(col.defs[t]) : 0 }
        func rep(_ t: Int) -> Int { leaf.maxRep > 0 ? Int(col.reps[t]) : 0 }

        func build(_ k: Int, _ range: Range<Int>) -> ParquetValue {
            let node = schema[leaf.chain[k]]
            if node.repetition == 2 {
                if def(range.lowerBound) < defAt[k] { return .list([]) }
                var items: [ParquetValue] = []
                var start = range.lowerBound
                for t in range where t > range.lowerBound && rep(t) == repAt[k] {
                    items.append(content(k, start..<t))
                    start = t
                }
                items.append(content(k, start..<range.upperBound))
                return .list(items)
            }
            if node.repetition == 1 && def(range.lowerBound) < defAt[k] { return .null }
            return content(k, range)
        }
        func content(_ k: Int, _ range: Range<Int>) -> ParquetValue {
            if k == leaf.chain.count - 1 {
                let vi = valueIndex[range.lowerBound]
                return vi >= 0 ? col.values.value(vi) : .null
            }
            return .group([schema[leaf.chain[k + 1]].name: build(k + 1, range)])
        }
        var rows: [ParquetValue] = []
        rows.reserveCapacity(expectedRows)
        var start = 0
        for t in 0..<n where t > 0 && rep(t) == 0 {
            rows.append(build(0, start..<t))
            start = t
        }
        if n > 0 { rows.append(build(0, start..<n)) }
        guard rows.count == expectedRows else {
            throw fail("column \(leaf.path.joined(separator: ".")) assembles \(rows.count) rows, the row group has \(expectedRows)")
        }
        return rows
    }

    func merge(_ a: ParquetValue, _ b: ParquetValue) -> ParquetValue {
        switch (a, b) {
        case (.group(let x), .group(let y)): return .group(x.merging(y) { merge($0, $1) })
        case (.list(let x), .list(let y)) where x.count == y.count: return .list(zip(x, y).map { merge($0, $1) })
        default: return a
        }
    }

    /// Applies LIST and MAP annotations: a LIST group becomes the array of its elements, a MAP an array of
    /// {key, value} pairs (or an object when keys are strings).
    func logical(_ i: Int, _ v: ParquetValue) -> ParquetValue {
        switch v {
        case .null: return .null
        case .list(let items):
            return .list(items.map { logicalContent(i, $0) })
        default:
            return logicalContent(i, v)
        }
    }

    func logicalContent(_ i: Int, _ v: ParquetValue) -> ParquetValue {
        let node = schema[i]
        guard case .group(let g) = v else { return v }
        if node.isList, node.children.count == 1 {
            let rep = node.children[0]
            guard case .list(let items)? = g[schema[rep].name] else { return .list([]) }
            let repNode = schema[rep]
            if repNode.children.count == 1 && repNode.name != "array" && !repNode.name.hasSuffix("_tuple") {
                let el = repNode.children[0]
                return .list(items.map { item in
                    guard case .group(let ig) = item else { return item }
                    return logical(el, ig[schema[el].name] ?? .null)
                })
            }
            return .list(items.map { logicalContent(rep, $0) })
        }
        if node.isMap, node.children.count == 1 {
            let kv = node.children[0]
            guard case .list(let items)? = g[schema[kv].name] else { return .group([:]) }
            let kvNode = schema[kv]
            guard kvNode.children.count == 2 else { return .list(items) }
            let (kn, vn) = (kvNode.children[0], kvNode.children[1])
            var obj: [String: ParquetValue] = [:]
            var pairs: [ParquetValue] = []
            var allStrings = true
            for item in items {
                guard case .group(let p) = item else { continue }
                let key = logical(kn, p[schema[kn].name] ?? .null), value = logical(vn, p[schema[vn].name] ?? .null)
                pairs.append(.list([key, value]))
                if case .bytes(let b) = key { obj[String(decoding: b, as: UTF8.self)] = value } else { allStrings = false }
            }
            return allStrings ? .group(obj) : .list(pairs)
        }
        var out: [String: ParquetValue] = [:]
        for c in node.children { out[schema[c].name] = logical(c, g[schema[c].name] ?? .null) }
        return .group(out)
    }
}

extension ParquetValue {
    /// JSON text: byte arrays as strings (invalid UTF-8 replaced), groups as objects with sorted keys.
    public func appendJSON(to out: inout [UInt8]) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .int(let i): out += Array(String(i).utf8)
        case .double(let d):
            if d.isFinite {
                out += Array((d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : "\(d)").utf8)
            } else {
                out += Array("null".utf8)
            }
        case .bytes(let b): JSONText.appendString(b, to: &out)
        case .list(let items):
            out.append(0x5B)
            for (k, it) in items.enumerated() {
                if k > 0 { out.append(0x2C) }
                it.appendJSON(to: &out)
            }
            out.append(0x5D)
        case .group(let g):
            out.append(0x7B)
            for (k, key) in g.keys.sorted().enumerated() {
                if k > 0 { out.append(0x2C) }
                JSONText.appendString(Array(key.utf8), to: &out)
                out.append(0x3A)
                g[key]!.appendJSON(to: &out)
            }
            out.append(0x7D)
        }
    }
}
