import NanoChat
import XCTest

/// The offline corpus cleaners leave prose, not markup.
final class OfflineCorpusTests: XCTestCase {
    func testRSTMarkupIsRemoved() {
        let rst = """
        .. _tut-intro:

        ***************
        An Introduction
        ***************

        .. index:: single: interpreter

        Use :func:`print` and :ref:`the tutorial <tut-informal>` with ``x = 1`` and *care*, see `Python <https://python.org>`_ [1]_.

        .. note:: Be careful.

        .. code-block:: python
           :linenos:

           print("hello")

        .. This is a comment
           spanning two lines.

        Done::

            literal
        """
        let out = OfflineCorpus.cleanRST(rst)
        XCTAssertTrue(out.contains("An Introduction"))
        XCTAssertTrue(out.contains("Use print and the tutorial with x = 1 and care, see Python."), out)
        XCTAssertTrue(out.contains("Be careful."))
        XCTAssertTrue(out.contains("print(\"hello\")"))
        XCTAssertTrue(out.contains("Done:\n"))
        for junk in [".. ", ":func:", "``", "****", "comment", ":linenos:", "tut-intro", "https://", "[1]_"] {
            XCTAssertFalse(out.contains(junk), "\(junk) left in:\n\(out)")
        }
    }

    func testPODMarkupIsRemoved() {
        let pod = """
        =head1 NAME

        perlintro - a brief introduction

        =over 4

        =item * Use C<print> and I<strong> B<words>X<index entry>, see L<perlfunc|perlfunc/print> and C<< $a <=> $b >>.

        =back

        =begin html

        <p>html only</p>

        =end html

        E<lt>tagE<gt>

        =cut
        """
        let out = OfflineCorpus.cleanPOD(pod)
        XCTAssertTrue(out.contains("NAME"))
        XCTAssertTrue(out.contains("Use print and strong words, see perlfunc and $a <=> $b."), out)
        XCTAssertTrue(out.contains("<tag>"))
        for junk in ["=head", "=over", "=item", "C<", "X<", "html only", "=cut"] { XCTAssertFalse(out.contains(junk), "\(junk) in:\n\(out)") }
    }

    func testGutenbergBoilerplateIsStripped() {
        let t = "The Project Gutenberg eBook of Hamlet\nlicence text\n*** START OF THE PROJECT GUTENBERG EBOOK HAMLET ***\nTo be, or not to be.\n*** END OF THE PROJECT GUTENBERG EBOOK HAMLET ***\nmore licence"
        XCTAssertEqual(OfflineCorpus.stripGutenberg(t), "To be, or not to be.\n")
        XCTAssertEqual(OfflineCorpus.stripGutenberg("plain text"), "plain text")
    }
}
